"""Bad questions get a sensible reply through QAService and `qa-bot ask`: an error message for
an empty one (or one with no words at all), an answer or a decline otherwise — never a crash.
"""

from __future__ import annotations

import json
import time

import pytest

from qa_bot.service import MAX_QUESTION_CHARS, QuestionError, clean_question
from tests.fault_support import assert_one_line_error, run_cli, run_qa_bot

REPEATED = "广灵经开区有多少家再生金属企业？"
TITLE = "发展再生金属产业 逐步形成聚集效应"  # the article that answers it

NO_QUESTION = {
    "empty": "",
    "whitespace": " \t\n\u3000 ",
    "control characters only": "\x00\x07\x1b\x08\x7f\x9b",
    "invisible characters only": "\u200b\u200d\ufeff\u202e",
    "emoji only": "😀🏭🚀👍🏽",
    "punctuation only": "？？？!!! ……",
}

QUESTIONS = {
    # name: (question, what the answer sentence must contain — or the title of the article the
    # answer must come from — or None for answer-or-decline)
    "10,000 characters, one question repeated": ((REPEATED * 700)[:10_000], "13家"),
    "10,000 characters of noise": ("".join(chr(0x4E00 + (i * 7919) % 20000)
                                           for i in range(10_000)), None),
    "English": ("How many recycled metal companies are there in Guangling?", None),
    # Markup is words to the retriever: the right article must still come first.
    "HTML and Markdown": ("<b>广灵经开区</b>有多少家**再生金属**企业？<script>alert(1)</script>",
                          TITLE),
    "HTML, Markdown, a link and entities": (
        "<b>广灵经开区</b>有多少家**再生金属**企业？<script>alert(1)</script>"
        "[链接](http://example.com) `code` &amp; <a href='x'>", None),
    "control characters inside": ("广灵经开区\x00有多少家\x1b[31m再生\u202e金属企业？\x07", "13家"),
    "traditional characters": ("廣靈經開區有多少家再生金屬企業？", "13家"),
    "one character": ("铅", None),
    "a question about nothing in the corpus": ("火星上的开发区有多少家咖啡店？", None),
}


@pytest.mark.parametrize("name", list(NO_QUESTION))
def test_no_question_is_refused_with_a_message(name):
    with pytest.raises(QuestionError) as refused:
        clean_question(NO_QUESTION[name])
    assert "type a question in words" in str(refused.value)


def test_long_question_is_cut_and_cleaned():
    cleaned = clean_question("问\x00题 " * 5000)
    assert len(cleaned) <= MAX_QUESTION_CHARS
    assert "\x00" not in cleaned


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NO_QUESTION))
def test_no_question_through_the_service_and_the_cli(name, seed_service, seed_index_dir,
                                                     embedder, monkeypatch):
    with pytest.raises(QuestionError):
        seed_service.answer(NO_QUESTION[name])
    result = run_cli(["--index-dir", str(seed_index_dir), "ask", NO_QUESTION[name]],
                     embedder=embedder, monkeypatch=monkeypatch)
    assert_one_line_error(result, "type a question in words")
    assert result.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(QUESTIONS))
def test_odd_questions_get_an_answer_or_a_decline(name, seed_service):
    question, expected = QUESTIONS[name]
    started = time.perf_counter()
    answer = seed_service.answer(question)
    assert time.perf_counter() - started < 30
    assert len(answer.question) <= MAX_QUESTION_CHARS
    assert not any(ord(ch) < 32 for ch in answer.question)
    if answer.sentence is None:
        assert answer.declined_reason
    else:
        assert answer.sentence.text.strip() and answer.passages
    if expected == TITLE:
        assert answer.passages[0].chunk.title == TITLE
    elif expected is not None:
        assert answer.sentence is not None and expected in answer.sentence.text


@pytest.mark.slow
@pytest.mark.parametrize("name", list(QUESTIONS))
@pytest.mark.parametrize("as_json", [False, True])
def test_odd_questions_through_the_cli(name, as_json, seed_index_dir, embedder, monkeypatch):
    question, expected = QUESTIONS[name]
    argv = ["--index-dir", str(seed_index_dir), "ask", question] + (["--json"] if as_json else [])
    result = run_cli(argv, embedder=embedder, monkeypatch=monkeypatch)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    if as_json:
        reply = json.loads(result.stdout)
        assert reply["answer"] is not None or reply["declined_reason"]
        if expected == TITLE:
            assert reply["passages"][0]["title"] == TITLE
        elif expected:
            assert expected in reply["answer"]["sentence"]
    else:
        assert result.stdout.strip()
        if expected:
            assert expected in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("options, ok", [
    (["-k", "0"], True), (["-k", "-3"], True), (["-k", "100000"], True),
    (["--zone", "火星开发区"], False), (["--zone", ""], True), (["--zone", "广灵"], True),
])
def test_odd_options(options, ok, seed_index_dir, embedder, monkeypatch):
    result = run_cli(["--index-dir", str(seed_index_dir), "ask", REPEATED, "--json", *options],
                     embedder=embedder, monkeypatch=monkeypatch)
    if ok:
        assert result.code == 0, result.stderr
        reply = json.loads(result.stdout)
        assert reply["answer"] is not None or reply["declined_reason"]
    else:
        assert_one_line_error(result, "unknown zone")


@pytest.mark.slow
def test_empty_question_in_a_real_process_is_quick(seed_index_dir):
    """Refused before the model is loaded: a typing slip costs no model load."""
    started = time.perf_counter()
    result = run_qa_bot(["--index-dir", str(seed_index_dir), "ask", "  "])
    assert_one_line_error(result, "empty")
    assert time.perf_counter() - started < 30
    assert "torch" not in result.stderr
