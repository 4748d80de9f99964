"""The real bot end to end: qa_bot's Application and QAService over a real index of the seed
issue, built with the real model, polling the local Bot API emulator.

Simulated users ask real questions, page through 更多结果, open 全文, leave feedback, talk in
groups, get refused, live through Bot API failures, and see a new issue appear without a
restart. Two tests run `qa-bot bot` itself as a subprocess (polling and webhook mode).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa_bot.config import (
    AnswerSettings,
    ConversationSettings,
    ModelSettings,
    Settings,
    TelegramSettings,
)
from qa_bot.service import QAService
from qa_bot.telegram import build_application
from qa_bot.telegram.feedback import FIELDS, read_rows
from qa_bot.telegram.texts import APOLOGY, REFUSED_BUTTON

try:
    from telegram_harness import group_chat, private_chat, stop_process
except ModuleNotFoundError:
    from tests.telegram_harness import group_chat, private_chat, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB, MALLORY = 1001, 1002, 1666  # Alice (admin) and Bob are listed, Mallory is not
WORK_GROUP, OTHER_GROUP = -5001, -5002
QUESTION = "广灵经开区有多少家再生金属企业？"
ZONE, BYLINE, TITLE = "广灵经济技术开发区", "王云霞", "发展再生金属产业 逐步形成聚集效应"
WAIT = 30.0  # generous: CI machines may be busy

EXTRA_ISSUE = "\n\n".join([
    "太原不锈钢产业园区",
    "## 园区首座氢能加注站投入运营",
    "本刊讯 7月5日，太原不锈钢产业园区首座氢能加注站正式投入运营。"
    "该加注站日加注能力达到500公斤，可满足60辆氢能重卡的日常加注需求。",
    "园区负责人介绍，下一步将围绕氢能重卡开展示范应用，推动园区绿色物流发展。（李明远）",
]) + "\n"
EXTRA_QUESTION = "太原不锈钢产业园区氢能加注站日加注能力是多少？"


def settings_for(index_dir: Path, emulator, token: str, tmp_path: Path,
                 passage_min_ratio: float = 0.0, idle_seconds: float = 1800.0,
                 **telegram) -> Settings:
    options = {
        "token": token,
        "base_url": emulator.base_url,
        "allowed_users": (ALICE, BOB),
        "allowed_chats": (WORK_GROUP,),
        "admin_users": (ALICE,),
        "feedback_path": str(tmp_path / "feedback.jsonl"),
        "reload_check_seconds": 0.5,
        "rate_limit_per_minute": 1000,
        **telegram,
    }
    return Settings(
        index_dir=str(index_dir),
        zone_aliases=str(REPO_ROOT / "config" / "zones.toml"),
        model=ModelSettings(cache_dir=os.environ.get("QA_BOT_MODEL_CACHE",
                                                     "~/.cache/qa-bot/models")),
        # 0 by default: most tests page through all five passages of QUESTION.
        answer=AnswerSettings(passage_min_ratio=passage_min_ratio),
        conversation=ConversationSettings(idle_seconds=idle_seconds),
        telegram=TelegramSettings(**options),
    )


@pytest.fixture
def start_bot(emulator, bot_token, seed_index_dir, embedder, run_bot, tmp_path):
    """Start qa_bot's Application (real QAService, shared model) polling the emulator."""

    def start(index_dir: Path | None = None, runner_options: dict | None = None, **options):
        settings = settings_for(index_dir or seed_index_dir, emulator, bot_token, tmp_path,
                                **options)
        service = QAService(settings, embedder=embedder, show_progress=False)
        app = build_application(settings, service=service)
        runner = run_bot(app, **(runner_options or {}))
        runner.settings, runner.service = settings, service
        return runner

    return start


def key_fact(service: QAService, question: str = QUESTION) -> list[str]:
    """The bold span the bot should show: what the service itself answers. Tests of the bot's
    behaviour compare with this; only the first test checks the answer is the right one."""
    sentence = service.answer(question).sentence
    start, end = sentence.span
    return [sentence.text[start:end]]


def qa_bot_ask_json(index_dir: Path, question: str) -> dict:
    """What `qa-bot ask --json` prints for the question."""
    from qa_bot.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--index-dir", str(index_dir), "ask", "--json", question]) == 0
    return json.loads(out.getvalue())


# -- asking ----------------------------------------------------------------------------------
def test_question_gets_the_right_zone_byline_and_bold_span(tg, start_bot, seed_index_dir):
    start_bot()
    since = tg.last_call_seq()
    reply = tg.ask(private_chat(ALICE), ALICE, QUESTION, timeout=WAIT)
    assert reply.parse_mode == "HTML"
    assert reply.text.startswith("💡 ")
    assert reply.button_texts == ["全文 1", "全文 2", "全文 3", "更多结果", "👍", "👎"]
    methods = [c.method for c in tg.calls(since=since) if c.method != "getUpdates"]
    assert methods[:2] == ["sendChatAction", "sendMessage"]  # "typing…" first
    # The same answer as `qa-bot ask`: same sentence, same source, same passages.
    cli = qa_bot_ask_json(seed_index_dir, QUESTION)
    assert cli["answer"]["sentence"] in reply.text
    assert reply.text.count("[") == 3
    for rank, passage in enumerate(cli["passages"][:3], start=1):
        assert f"[{rank}] {passage['zone']} · {passage['title']}" in reply.text
    # And it is the right answer: the zone and byline of the article, the number in bold.
    first_line = reply.text.split("\n")[1]
    assert ZONE in first_line and BYLINE in first_line and TITLE in first_line
    assert reply.entity_texts("bold") == ["13家"], reply.text.split("\n")[0]


def test_more_results_full_text_and_feedback(tg, start_bot):
    runner = start_bot()
    chat = private_chat(ALICE)
    answer = tg.ask(chat, ALICE, QUESTION, timeout=WAIT)

    tg.press(answer, "更多结果")
    page2 = tg.wait_edit(answer, timeout=WAIT)
    assert "相关段落（4–5 / 5）" in page2.text and "[4]" in page2.text
    assert page2.entity_texts("bold") == key_fact(runner.service)
    assert page2.button_texts == ["全文 4", "全文 5", "上一页", "👍", "👎"]
    tg.press(page2, "上一页")
    page1 = tg.wait_edit(page2, timeout=WAIT)
    assert "相关段落（1–3 / 5）" in page1.text

    tg.press(page1, "全文 1")
    article = tg.next_bot_message(ALICE, timeout=WAIT)
    assert article.reply_to_message_id == answer.message_id
    assert article.text.startswith(TITLE)
    assert "目前全区已有再生金属企业13家" in article.text and f"（{BYLINE}）" in article.text
    assert article.entity_texts("bold") == [TITLE]

    since = tg.last_call_seq()
    tg.press(page1, "👍")
    call = tg.wait_call("answerCallbackQuery", lambda c: "text" in c.params, timeout=WAIT,
                        since=since)
    assert call.params["text"] == "谢谢反馈！👍"
    (row,) = read_rows(Path(runner.settings.telegram.feedback_path))
    assert tuple(row) == FIELDS
    assert (row["vote"], row["user_id"], row["chat_id"], row["question"]) == (
        "up", ALICE, ALICE, QUESTION)
    assert row["answer"] == runner.service.answer(QUESTION).sentence.text
    assert row["article_ids"][0] == runner.service.answer(QUESTION).sentence.chunk.article_id


def test_commands(tg, start_bot):
    start_bot()
    chat = private_chat(BOB)
    tg.send_command(chat, BOB, "zones")
    zones = tg.next_bot_message(BOB, timeout=WAIT)
    assert f"{ZONE}：1 篇" in zones.text
    tg.send_command(chat, BOB, "latest")
    latest = tg.next_bot_message(BOB, timeout=WAIT)
    assert "最新一期：bulletin-2023-06（10 篇）" in latest.text
    assert len(latest.buttons) == 10
    tg.send_command(chat, BOB, "zone", f"广灵 {QUESTION}")
    zoned = tg.next_bot_message(BOB, timeout=WAIT)
    assert zoned.entity_texts("bold") and "相关段落（只有这一篇相关）" in zoned.text
    tg.send_command(chat, BOB, "help")
    assert "广灵经开区有多少家再生金属企业？" in tg.next_bot_message(BOB, timeout=WAIT).text
    commands = tg.wait_call("setMyCommands", timeout=WAIT)
    assert "zones" in json.dumps(commands.params)


# -- groups and access -----------------------------------------------------------------------
def test_group_needs_a_mention_a_reply_or_ask(tg, start_bot):
    runner = start_bot()
    group = group_chat(WORK_GROUP, "开发区工作群")
    silent = tg.send_message(group, BOB, QUESTION)
    asked = tg.mention(group, BOB, f"@{tg.bot_username} {QUESTION}")
    reply = tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    assert reply.reply_to_message_id == asked["message_id"]
    assert reply.entity_texts("bold") == key_fact(runner.service)
    follow_up = tg.send_message(group, ALICE, "其中已投产的有几家？", reply_to=reply)
    answer2 = tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    assert answer2.reply_to_message_id == follow_up["message_id"]
    tg.send_command(group, ALICE, "ask", QUESTION, to_bot=True)
    tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    # The unmentioned message, sent first, never got an answer.
    replies = [m.reply_to_message_id for m in tg.bot_messages(WORK_GROUP)]
    assert silent["message_id"] not in replies and len(replies) == 3


def test_unlisted_user_and_group_are_refused(tg, start_bot):
    runner = start_bot()
    refusal = tg.ask(private_chat(MALLORY), MALLORY, QUESTION, timeout=WAIT)
    assert refusal.text.startswith("抱歉，你还没有使用这个机器人的权限")
    assert str(MALLORY) in refusal.text and ZONE not in refusal.text and "💡" not in refusal.text
    assert not refusal.buttons
    tg.send_command(group_chat(OTHER_GROUP), ALICE, "ask", QUESTION, to_bot=True)
    assert "本群还没有开通" in tg.next_bot_message(OTHER_GROUP, timeout=WAIT).text
    # A button of Alice's answer pressed by Mallory.
    answer = tg.ask(private_chat(ALICE), ALICE, QUESTION, timeout=WAIT)
    since = tg.last_call_seq()
    tg.press(answer, "全文 1", user=MALLORY)
    call = tg.wait_call("answerCallbackQuery", timeout=WAIT, since=since)
    assert call.params["text"] == REFUSED_BUTTON
    assert str(call.params["show_alert"]).lower() == "true"
    assert not tg.new_bot_messages(ALICE)
    assert not Path(runner.settings.telegram.feedback_path).exists()


# -- conversations ---------------------------------------------------------------------------
FIRST, FOLLOW_UP = "侯马经济开发区的调度会是谁主持的？", "他要求全区上下做什么？"
UNDERSTOOD = "理解为：李俊胜要求全区上下做什么？"


def test_a_two_turn_conversation_in_a_private_chat(tg, start_bot):
    start_bot(passage_min_ratio=0.4)
    chat = private_chat(ALICE)
    first = tg.ask(chat, ALICE, FIRST, timeout=WAIT)
    assert first.entity_texts("bold") == ["李俊胜"]
    assert "相关段落（只有这一篇相关）" in first.text and "更多结果" not in first.button_texts
    follow = tg.ask(chat, ALICE, FOLLOW_UP, timeout=WAIT)
    assert follow.text.startswith(UNDERSTOOD)
    assert "统一思想" in follow.text and "侯马经济开发区" in follow.text
    listing = tg.ask(chat, ALICE, "侯马开发区", timeout=WAIT)
    assert "召开2023年项目建设第19次调度会" in listing.text and listing.button_texts == ["全文 1"]
    tg.send_command(chat, ALICE, "new")
    assert "重新开始" in tg.next_bot_message(ALICE, timeout=WAIT).text
    alone = tg.ask(chat, ALICE, FOLLOW_UP, timeout=WAIT)
    assert "理解为" not in alone.text


def test_group_members_have_conversations_of_their_own(tg, start_bot):
    start_bot()
    group = group_chat(WORK_GROUP, "开发区工作群")
    tg.send_command(group, ALICE, "ask", FIRST, to_bot=True)
    tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    tg.send_command(group, BOB, "ask", QUESTION, to_bot=True)
    tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    # Alice's follow-up is read with Alice's question, not with Bob's, which came last.
    tg.send_command(group, ALICE, "ask", FOLLOW_UP, to_bot=True)
    alice = tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    assert alice.text.startswith(UNDERSTOOD)
    tg.send_command(group, BOB, "ask", "规模以上企业有多少家？", to_bot=True)
    bob = tg.next_bot_message(WORK_GROUP, timeout=WAIT)
    assert bob.text.startswith("理解为：规模以上企业有多少家？（接着谈《发展再生金属产业")
    assert "全区现有规模以上企业24家" in bob.text


def test_a_conversation_expires_after_its_idle_time(tg, start_bot):
    start_bot(idle_seconds=1.0)
    chat = private_chat(BOB)
    tg.ask(chat, BOB, FIRST, timeout=WAIT)
    time.sleep(1.5)
    alone = tg.ask(chat, BOB, FOLLOW_UP, timeout=WAIT)
    assert "理解为" not in alone.text


# -- failures --------------------------------------------------------------------------------
def test_bot_survives_bot_api_errors_and_resumes(tg, start_bot):
    runner = start_bot()
    chat = private_chat(ALICE)
    fact = key_fact(runner.service)
    tg.ask(chat, ALICE, QUESTION, timeout=WAIT)
    # getUpdates answers 500 several times in a row: polling backs off, then resumes.
    tg.inject_faults(500, count=3, methods=["getUpdates"], interrupt=True)
    assert tg.ask(chat, ALICE, QUESTION, timeout=WAIT).entity_texts("bold") == fact
    # The reply itself fails once: the error handler apologises instead of leaving silence.
    tg.inject_faults(500, count=1, methods=["sendMessage"])
    assert tg.ask(chat, ALICE, QUESTION, timeout=WAIT).text == APOLOGY
    # Reply and apology both fail: nothing to see, but the next question works.
    since = tg.last_call_seq()
    tg.inject_faults(500, count=2, methods=["sendMessage"])
    tg.send_message(chat, ALICE, QUESTION)
    tg.wait_for(lambda: len([c for c in tg.calls("sendMessage", since=since)
                             if c.status == 500]) == 2, WAIT, "the reply and apology to fail")
    _wait_until(lambda: len(runner.handler_errors) == 2)  # both failed replies were handled
    assert tg.ask(chat, ALICE, QUESTION, timeout=WAIT).entity_texts("bold") == fact
    errors = runner.take_errors()  # what the error handlers saw: the two failed replies
    assert [str(e) for e in errors] == ["Internal Server Error (injected fault)"] * 2
    assert not tg.new_bot_messages(ALICE)


def _wait_until(condition, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- hot reload ------------------------------------------------------------------------------
def test_new_issue_is_answered_without_a_restart(tg, start_bot, seed_index_dir, embedder,
                                                 tmp_path):
    from qa_bot.ingest import Ingestor

    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)  # the seed index is shared: work on a copy
    runner = start_bot(index_dir=index_dir)
    chat = private_chat(ALICE)
    before = tg.ask(chat, ALICE, EXTRA_QUESTION, timeout=WAIT)
    assert "500公斤" not in before.text
    old_snapshot = runner.service.snapshot.name

    issue = tmp_path / "bulletin-2023-07.txt"
    issue.write_text(EXTRA_ISSUE, encoding="utf-8")
    report = Ingestor(runner.settings, embedder, show_progress=False).ingest([issue])
    assert report.added == 1 and not report.errors
    _wait_until(lambda: runner.service.snapshot.name != old_snapshot)  # the watcher reloads

    after = tg.ask(chat, ALICE, EXTRA_QUESTION, timeout=WAIT)
    citation = "太原不锈钢产业园区 · 园区首座氢能加注站投入运营 · 李明远 · bulletin-2023-07"
    assert citation in after.text
    assert "500公斤" in after.text
    tg.send_command(chat, ALICE, "latest")
    assert "最新一期：bulletin-2023-07（1 篇）" in tg.next_bot_message(ALICE, timeout=WAIT).text
    tg.send_command(chat, ALICE, "reload")  # the watcher got there first
    assert tg.next_bot_message(ALICE, timeout=WAIT).text.startswith("索引没有变化")


# -- `qa-bot bot` itself -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bot_process(emulator, token: str, index_dir: Path, tmp_path: Path, **env: str):
    environment = {
        **os.environ,
        "QA_BOT_CONFIG": str(REPO_ROOT / "config" / "qa-bot.toml"),
        "QA_BOT_INDEX_DIR": str(index_dir),
        "QA_BOT_ZONE_ALIASES": str(REPO_ROOT / "config" / "zones.toml"),
        "QA_BOT_MODEL_CACHE_DIR": os.environ.get("QA_BOT_MODEL_CACHE", "~/.cache/qa-bot/models"),
        "QA_BOT_TELEGRAM_TOKEN": token,
        "QA_BOT_TELEGRAM_BASE_URL": emulator.base_url,
        "QA_BOT_TELEGRAM_ALLOWED_USERS": f"{ALICE},{BOB}",
        "QA_BOT_TELEGRAM_FEEDBACK_PATH": str(tmp_path / "feedback.jsonl"),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "qa_bot", "-vv", "bot"], cwd=tmp_path, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("mode", ["polling", "webhook"])
def test_qa_bot_bot_command(tg, emulator, bot_token, seed_index_dir, tmp_path, mode):
    env = {}
    if mode == "webhook":
        port = _free_port()
        env = {"QA_BOT_TELEGRAM_MODE": "webhook",
               "QA_BOT_TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{port}/tg-hook",
               "QA_BOT_TELEGRAM_WEBHOOK_PORT": str(port)}
    process = _bot_process(emulator, bot_token, seed_index_dir, tmp_path, **env)
    try:
        tg.wait_call("setMyCommands", timeout=120)  # post_init done: model and index loaded
        reply = tg.ask(private_chat(ALICE), ALICE, QUESTION, timeout=WAIT)
        assert reply.text.startswith("💡 ") and ZONE in reply.text
        if mode == "webhook":
            hook = tg.wait_call("setWebhook", timeout=WAIT)
            assert hook.params["url"].endswith("/tg-hook") and hook.params.get("secret_token")
            assert not tg.calls("getUpdates")
        else:
            assert tg.calls("getUpdates")
    finally:
        code, err = stop_process(process)
    assert code == 0, err[-3000:]
    assert bot_token not in err and bot_token.split(":")[1] not in err
    assert re.search(r"starting the Telegram bot", err)


def test_qa_bot_bot_refuses_an_empty_allow_list(emulator, bot_token, seed_index_dir, tmp_path):
    process = _bot_process(emulator, bot_token, seed_index_dir, tmp_path,
                           QA_BOT_TELEGRAM_ALLOWED_USERS="")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "allow-list is empty" in err and "open_to_everyone" in err
    assert bot_token not in err



def test_throughput_bench_smoke(seed_index_dir):
    """bench/bot_throughput.py runs end to end (tiny load; real figures come from the script)."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        import bot_throughput
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))
    result = bot_throughput.run(seed_index_dir, users=2, duration=0.5, latency_questions=2)
    assert result["latency_one_user"]["n"] == 2
    assert result["replies"] >= 2 and result["replies_per_s"] > 0
    assert result["answers_with_content"] == 3 + result["replies"]  # warm-up + latency + load
