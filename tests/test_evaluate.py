import json
import os
import subprocess
import sys

import pytest

from qa_bot.evaluate import (
    EvalDataError,
    Scores,
    bold_span,
    evaluate,
    format_table,
    judge,
    load_questions,
    normalise_answer,
    read_questions,
    score_answer,
    span_exact_match,
    span_f1,
)
from qa_bot.records import Answer, AnswerSentence, Chunk, Hit


def chunk(article_id, title):
    return Chunk(article_id, 0, "text", 0, 4, "i", title)


def answer(question, ids_titles, sentence=None, span=None):
    hits = [Hit(chunk(i, t), 1.0) for i, t in ids_titles]
    sent = AnswerSentence(sentence, hits[0].chunk, span, 0.8) if sentence else None
    return Answer(question, sent, hits, "" if sentence else "declined")


def write_rows(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                              for r in rows) + "\n")
    return path


def test_load_questions_reads_every_gold_form(tmp_path):
    path = write_rows(tmp_path / "q.jsonl", [
        {"question": "a", "passage_id": "P1", "answers": ["x"], "kind": "lexical"},
        {"question": "b", "passage_ids": ["P2", "P3"], "answers": []},
        {"question": "c", "title": " 召开 调度会 ", "answers": ["y"]},
        {"question": "d", "answers": None},
    ])
    questions = load_questions(path)
    assert [q.gold_ids for q in questions[:2]] == [{"P1"}, {"P2", "P3"}]
    assert questions[2].gold_title == "召开调度会"
    assert not questions[3].answerable
    assert [q.kind for q in questions] == ["lexical", "", "", ""]
    (tmp_path / "bad.jsonl").write_text('{"answers": []}\n')
    with pytest.raises(EvalDataError, match=r"bad\.jsonl:1"):
        load_questions(tmp_path / "bad.jsonl")


def test_bad_rows_are_reported_with_their_line_and_skipped(tmp_path):
    path = write_rows(tmp_path / "q.jsonl", [
        {"question": "好的问题？", "title": "T", "answers": ["x"]},
        {"question": "  ", "title": "T", "answers": ["x"]},
        {"title": "T", "answers": ["x"]},
        "{not json",
        '["a", "list"]',
        {"question": "没有answers字段？", "title": "T"},
        {"question": "answers是字符串？", "title": "T", "answers": "x"},
        {"question": "没有金标文章？", "answers": ["x"]},
        {"question": "无法回答的问题？", "answers": None},
        {"question": "金标是字符串？", "passage_ids": "P1", "answers": ["x"]},
    ])
    with path.open("ab") as handle:
        handle.write('{"question": "坏字节", "answers": null}\xff\n'.encode("gb18030"))
    questions, problems = read_questions(path)
    assert [q.line for q in questions] == [1, 9]
    assert [p.line for p in problems] == [2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert all(p.source == str(path) for p in problems)
    messages = [p.message for p in problems]
    assert "empty" in messages[0] and "missing" in messages[1]
    assert "not JSON" in messages[2] and "not an object" in messages[3]
    assert "answers" in messages[4] and "list of strings" in messages[5]
    assert "passage_id" in messages[6]
    assert "must be a list" in messages[7] and "not UTF-8" in messages[8]
    assert str(problems[0]).startswith(f"{path}:2: ")


@pytest.mark.parametrize(("prediction", "answers", "f1", "exact"), [
    ("13家", ("13家",), 1.0, True),
    ("《Hello World》", ("hello world",), 1.0, True),  # case, punctuation, whitespace
    ("12，3", ("123",), 1.0, True),  # Chinese punctuation
    ("李俊胜", ("副主任李俊胜", "李俊胜"), 1.0, True),  # the best gold answer counts
    # common substring 270余份 (5 chars) of a prediction of 8 and a gold of 5:
    # P = 5/8, R = 1, F1 = 2·(5/8)/(13/8) = 10/13
    ("270余份承诺书", ("270余份",), 10 / 13, False),
    # the common *substring* (one char), not the common subsequence (甲丙): P = 1/4, R = 1/2
    ("甲乙丙丁", ("甲丙",), 1 / 3, False),
    ("5月", ("100亿元",), 0.0, False),
    ("", ("13家",), 0.0, False),
    ("。", ("。",), 0.0, False),  # nothing left to compare
])
def test_span_f1_and_exact_match_follow_cmrc(prediction, answers, f1, exact):
    assert span_f1(prediction, answers) == pytest.approx(f1)
    assert span_exact_match(prediction, answers) is exact


def test_normalise_answer():
    assert normalise_answer(" A-B：「甲」（乙）～+ ") == "ab甲乙"


def test_bold_span_is_the_highlighted_text():
    assert bold_span(answer("q", [("A", "t")], "已有企业13家。", span=(4, 7))) == "13家"
    assert bold_span(answer("q", [("A", "t")], "已有企业13家。")) == ""  # no span
    assert bold_span(answer("q", [("A", "t")])) == ""  # declined


def test_scores(tmp_path):
    path = write_rows(tmp_path / "q.jsonl", [
        {"question": "q1", "passage_id": "A", "answers": ["13家"]},
        {"question": "q2", "title": "标题 B", "answers": ["李俊胜"]},
        {"question": "q3", "answers": None},
        {"question": "q4", "answers": None},
    ])
    q1, q2, q3, q4 = load_questions(path)
    scores = Scores("hybrid")
    score_answer(q1, answer("q1", [("A", "t"), ("B", "u")], "已有企业13家。", (2, 7)), scores)
    score_answer(q2, answer("q2", [("A", "t"), ("B", "标题B")], "张三主持。"), scores)
    score_answer(q3, answer("q3", [("A", "t")]), scores)  # declined: right
    score_answer(q4, answer("q4", [("A", "t")], "某句。"), scores)  # answered: wrong
    result = scores.as_dict()
    assert result["n"] == 4 and result["answerable"] == 2
    assert result["recall@1"] == 0.5 and result["recall@5"] == 1.0
    assert result["mrr@10"] == 0.75
    assert result["answer_hit"] == 0.5
    # q1's span 企业13家 against 13家: P = 3/5, R = 1, F1 = 0.75; q2 has no span: 0
    assert result["span_f1"] == 0.375 and result["span_em"] == 0.0
    assert result["decline_rate"] == 0.5 and result["no_answer_precision"] == 1.0
    assert result["answered_rate"] == 1.0
    table = format_table([result])
    assert "recall@1" in table and "span_f1" in table and "0.375" in table


def test_a_declined_answerable_question_scores_zero_span(tmp_path):
    (question,) = load_questions(write_rows(tmp_path / "q.jsonl", [
        {"question": "q", "passage_id": "A", "answers": ["13家"]}]))
    outcome = judge(question, answer("q", [("A", "t")]))
    assert outcome.declined and outcome.rank == 1
    assert outcome.span_f1 == 0.0 and not outcome.span_em and not outcome.answer_hit


class CannedService:
    """Answers from a table, as `QAService.answer` would: enough to test the bookkeeping."""

    def __init__(self, answers):
        self.answers = answers

    def answer(self, question, k, mode):
        return self.answers[question]


def test_evaluate_breaks_down_by_kind_and_keeps_a_row_per_question(tmp_path):
    questions = load_questions(write_rows(tmp_path / "q.jsonl", [
        {"question": "谁主持？", "passage_id": "A", "answers": ["李俊胜"], "kind": "lexical"},
        {"question": "多少家？", "passage_id": "B", "answers": ["13家"], "kind": "paraphrase"},
        {"question": "火星？", "answers": None, "kind": "unanswerable"},
        {"question": "无类别？", "passage_id": "A", "answers": ["x"]},
    ]))
    service = CannedService({
        "谁主持？": answer("谁主持？", [("A", "t")], "李俊胜主持会议。", (0, 3)),
        "多少家？": answer("多少家？", [("A", "t"), ("B", "u")], "共5月。", (1, 3)),
        "火星？": answer("火星？", [("A", "t")]),
        "无类别？": answer("无类别？", [("C", "v")]),
    })
    run = evaluate(service, questions, "hybrid")
    result = run.as_dict()
    assert result["n"] == 4 and result["span_f1"] == pytest.approx(1 / 3, abs=1e-4)
    by_kind = result["by_kind"]
    assert set(by_kind) == {"lexical", "paraphrase", "unanswerable"}  # no kind: overall only
    assert by_kind["lexical"]["span_f1"] == 1.0 and by_kind["lexical"]["span_em"] == 1.0
    assert by_kind["paraphrase"]["span_f1"] == 0.0 and by_kind["paraphrase"]["recall@1"] == 0.0
    assert by_kind["unanswerable"]["decline_rate"] == 1.0
    assert "retriever" not in by_kind["lexical"]
    assert [row["line"] for row in run.details] == [1, 2, 3, 4]
    first, second, third, _ = run.details
    assert first["span"] == "李俊胜" and first["rank"] == 1 and first["confidence"] == 0.8
    assert first["gold_answers"] == ["李俊胜"] and first["kind"] == "lexical"
    assert second["rank"] == 2 and second["span"] == "5月" and second["span_f1"] == 0.0
    assert third["declined"] and third["declined_reason"] == "declined"
    assert third["gold_answers"] is None and third["span_f1"] is None
    json.dumps(run.details, ensure_ascii=False)  # every row is plain JSON
    table = format_table([result])
    assert "  · lexical" in table and "  · unanswerable" in table


def test_eval_command_fails_only_when_no_row_is_valid(tmp_path, capsys):
    from qa_bot.cli import main

    path = write_rows(tmp_path / "q.jsonl", [{"question": "", "answers": None}, "[]"])
    assert main(["--index-dir", str(tmp_path / "idx"), "eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1:" in err and f"{path}:2:" in err and "no valid question row" in err


@pytest.mark.slow
def test_eval_command_skips_bad_rows_and_writes_details(tmp_path, seed_index_dir):
    from tests.conftest import REPO_ROOT

    path = write_rows(tmp_path / "q.jsonl", [
        {"question": "广灵经开区有多少家再生金属企业？",
         "title": "发展再生金属产业 逐步形成聚集效应", "answers": ["13家"], "kind": "lexical"},
        {"question": "", "title": "x", "answers": ["y"], "kind": "lexical"},
        {"question": "太原经开区今年引进了几家半导体企业？", "answers": None,
         "kind": "unanswerable"},
    ])
    details = tmp_path / "details.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "qa_bot", "--index-dir", str(seed_index_dir), "eval", str(path),
         "--json", "--details", str(details)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert f"{path}:2: no question" in done.stderr
    result = json.loads(done.stdout)
    assert result["n"] == 2 and result["recall@1"] == 1.0
    assert result["span_f1"] == 1.0 and result["span_em"] == 1.0  # the bold span is 13家
    assert set(result["by_kind"]) == {"lexical", "unanswerable"}
    rows = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    assert [row["line"] for row in rows] == [1, 3]
    assert rows[0]["span"] == "13家" and rows[0]["answer_zone"] == "广灵经济技术开发区"
    assert rows[1]["gold_answers"] is None
