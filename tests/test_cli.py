"""The qa-bot command as users run it: real model, real index of the seed issue."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

SEED_QUESTIONS = [
    # question, zone, byline, a string the answer sentence must contain
    ("广灵经开区有多少家再生金属企业？", "广灵经济技术开发区", "王云霞", "13家"),
    ("侯马经开区的调度会由谁主持？", "侯马经济开发区", "贺玉斌", "李俊胜"),
    ("上党经开区的陈华一行去哪里考察学习？", "沁源县", "周旭 张晨帆", "沁源经开区"),
    ("祁县经济开发区党员干部共签订了多少份承诺书？", "祁县经济开发区", "陈强", "270余份"),
    ("丁小强要求用好多少种招商模式？", "运城经济技术开发区", "王文军", "12种"),
]


def run_cli(*args: str, index_dir, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "QA_BOT_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "qa_bot", *args], cwd=REPO_ROOT, env=env, input=stdin,
        capture_output=True, text=True, timeout=300,
    )


def test_ask_json_answers_seed_questions_with_zone_and_byline(seed_index_dir):
    for question, zone, byline, expected in SEED_QUESTIONS[:1]:
        result = run_cli("ask", question, "--json", "-k", "3", index_dir=seed_index_dir)
        assert result.returncode == 0, result.stderr
        payload = json.loads(result.stdout)
        assert payload["question"] == question
        assert payload["answer"]["zone"] == zone
        assert payload["answer"]["byline"] == byline
        assert expected in payload["answer"]["sentence"]
        assert payload["answer"]["issue"] == "bulletin-2023-06"
        assert len(payload["passages"]) == 3
        first = payload["passages"][0]
        assert set(first) >= {"rank", "score", "text", "zone", "title", "byline", "issue",
                              "article_id"}
        assert first["rank"] == 1 and first["zone"] == zone


@pytest.mark.parametrize(("question", "zone", "byline", "expected"), SEED_QUESTIONS)
def test_the_answer_path_cites_the_right_article(seed_service, question, zone, byline, expected):
    answer = seed_service.answer(question).to_dict()
    assert answer["answer"]["zone"] == zone
    assert answer["answer"]["byline"] == byline
    assert expected in answer["answer"]["sentence"]


def test_traditional_question_finds_simplified_text(seed_service):
    answer = seed_service.answer("廣靈經開區有多少家再生金屬企業？")
    assert answer.sentence is not None and "13家" in answer.sentence.text


def test_unanswerable_question_is_declined_with_nearest_titles(seed_index_dir):
    result = run_cli("ask", "太原经开区今年引进了几家半导体企业？", index_dir=seed_index_dir)
    assert result.returncode == 0
    assert "没有找到" in result.stdout and "太原经开区" in result.stdout
    assert "最接近的文章" in result.stdout


def test_zone_filter_and_unknown_zone(seed_service):
    answer = seed_service.answer("召开了什么会？", zone="侯马")
    assert {hit.chunk.zone for hit in answer.passages} == {"侯马经济开发区"}
    from qa_bot.service import UnknownZone

    with pytest.raises(UnknownZone, match="zones in the corpus"):
        seed_service.answer("召开了什么会？", zone="太原")


def test_repl_gives_the_same_answer_as_ask_and_shows_articles(seed_index_dir):
    question = SEED_QUESTIONS[1][0]
    ask = run_cli("ask", question, index_dir=seed_index_dir)
    repl = run_cli("repl", index_dir=seed_index_dir, stdin=f"{question}\n:article 1\n:quit\n")
    assert repl.returncode == 0, repl.stderr
    assert ask.stdout.strip() in repl.stdout
    assert "（贺玉斌）" in repl.stdout  # the full article, byline last


def test_errors_are_one_line_and_non_zero(tmp_path, seed_index_dir):
    empty = run_cli("ask", "   ", index_dir=seed_index_dir)
    assert empty.returncode == 2 and "question is empty" in empty.stderr
    assert "Traceback" not in empty.stderr
    missing = run_cli("stats", index_dir=tmp_path / "nothing-here")
    assert missing.returncode == 2 and "qa-bot ingest" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_stats(seed_index_dir):
    result = run_cli("stats", "--json", index_dir=seed_index_dir)
    stats = json.loads(result.stdout)
    assert stats["issues"] == 1 and stats["articles"] == 10
    assert stats["model"] == "bundled:multilingual-e5-small"
    assert stats["dense index"] == "flat"
