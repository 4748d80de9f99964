from qa_bot.chinese import sentence_spans, split_sentences, to_simplified


def test_sentences_end_on_chinese_marks_and_keep_closing_quotes():
    text = "他说：“要加力。”随后离开！是否可行？一是组织；二是宣传……下一步继续"
    assert split_sentences(text) == [
        "他说：“要加力。”",
        "随后离开！",
        "是否可行？",
        "一是组织；",
        "二是宣传……",
        "下一步继续",
    ]


def test_newline_ends_a_sentence_and_spans_point_into_the_text():
    text = "### 小标题\n正文第一句。第二句。\n\n  尾段  "
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["### 小标题", "正文第一句。", "第二句。", "尾段"]


def test_ascii_marks_and_brackets():
    sentences = split_sentences("Done! OK? 办法（试行）。结束")
    assert sentences == ["Done!", "OK?", "办法（试行）。", "结束"]


def test_traditional_to_simplified():
    assert to_simplified("經濟技術開發區調研項目") == "经济技术开发区调研项目"
    assert to_simplified("") == ""
