import json

import pytest

from qa_bot.evaluate import EvalDataError, Scores, format_table, load_questions, score_answer
from qa_bot.records import Answer, AnswerSentence, Chunk, Hit


def chunk(article_id, title):
    return Chunk(article_id, 0, "text", 0, 4, "i", title)


def answer(question, ids_titles, sentence=None):
    hits = [Hit(chunk(i, t), 1.0) for i, t in ids_titles]
    sent = AnswerSentence(sentence, hits[0].chunk) if sentence else None
    return Answer(question, sent, hits, "" if sentence else "declined")


def test_load_questions_reads_every_gold_form(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"question": "a", "passage_id": "P1", "answers": ["x"]},
        {"question": "b", "passage_ids": ["P2", "P3"], "answers": []},
        {"question": "c", "title": " 召开 调度会 ", "answers": ["y"]},
        {"question": "d", "answers": None},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    questions = load_questions(path)
    assert [q.gold_ids for q in questions[:2]] == [{"P1"}, {"P2", "P3"}]
    assert questions[2].gold_title == "召开调度会"
    assert not questions[3].answerable
    (tmp_path / "bad.jsonl").write_text('{"answers": []}\n')
    with pytest.raises(EvalDataError, match=r"bad\.jsonl:1"):
        load_questions(tmp_path / "bad.jsonl")


def test_scores(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"question": "q1", "passage_id": "A", "answers": ["13家"]},
        {"question": "q2", "title": "标题 B", "answers": ["李俊胜"]},
        {"question": "q3", "answers": None},
        {"question": "q4", "answers": None},
    ]))
    q1, q2, q3, q4 = load_questions(path)
    scores = Scores("hybrid")
    score_answer(q1, answer("q1", [("A", "t"), ("B", "u")], "已有企业13家。"), scores)
    score_answer(q2, answer("q2", [("A", "t"), ("B", "标题B")], "张三主持。"), scores)
    score_answer(q3, answer("q3", [("A", "t")]), scores)  # declined: right
    score_answer(q4, answer("q4", [("A", "t")], "某句。"), scores)  # answered: wrong
    result = scores.as_dict()
    assert result["n"] == 4 and result["answerable"] == 2
    assert result["recall@1"] == 0.5 and result["recall@5"] == 1.0
    assert result["mrr@10"] == 0.75
    assert result["answer_hit"] == 0.5
    assert result["decline_rate"] == 0.5 and result["no_answer_precision"] == 1.0
    assert result["answered_rate"] == 1.0
    table = format_table([result])
    assert "recall@1" in table and "0.500" in table
