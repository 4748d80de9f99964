"""Security of the Telegram bot beyond tests/test_telegram_handlers.py, which covers the
allow-list per entry point, escaping of hostile records and the feedback fields with a fake
answer service. Here:

* the real pipeline: hostile articles (``<b>``, ``<a href=…>``, ``&``) are ingested — as JSONL
  and as a bulletin — and every reply that can show them (answer, more results, full text,
  /latest, /zones, /zone) is valid Telegram HTML showing them literally;
* an outsider gets nothing from the corpus whatever update they send (hypothesis over entry
  points: private and group messages, commands, edited messages, buttons with keys taken from
  a listed user's answers, buttons on inaccessible messages), with the real QAService behind;
* the token never reaches stderr, even when Telegram rejects it (PTB's InvalidToken quotes it),
  nor the logs of a whole session, nor the feedback store; logs carry no question text or names.

Offline and fast: the index is built with FakeEmbedder (the storage and rendering are real; the
model's meaning is not what is tested) and the Bot API is the handler tests' FakeBotAPI.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update

from qa_bot.ingest import Ingestor
from qa_bot.service import QAService
from qa_bot.telegram.access import TokenRedactor, install_redactor, redact_uncaught
from qa_bot.telegram.feedback import FIELDS, read_rows
from qa_bot.telegram.render_html import visible_text
from qa_bot.telegram.texts import REFUSED_BUTTON
from tests.conftest import REPO_ROOT, SEED_ISSUE, make_settings
from tests.fault_support import QA_BOT, FakeEmbedder, subprocess_env
from tests.test_telegram_handlers import (
    ALICE,
    BOB,
    BOT_USERNAME,
    MALLORY,
    OTHER_GROUP,
    TOKEN,
    WORK_GROUP,
    BotUnderTest,
    assert_telegram_html,
    button_data,
    callback_update,
    chat,
    mention,
    message_update,
    user,
)

LINK = '<a href="https://evil.example/x?a=1&b=2">点这里</a>'
HOSTILE_ROW = {
    "id": "h1",
    "title": "<b>研发中心</b>投产 & 签约",
    "zone": "R&D<i>示范区</i>",
    "byline": "<u>张三</u> & 李四",
    "text": (
        "本刊讯 7月2日，<b>研发中心</b>再生金属项目正式投产，R&D投入5&lt;6亿元，详见" + LINK
        + "。\n第二段：<script>alert(1)</script>，A&B公司签约落户研发中心。"
    ),
}
HOSTILE_BULLETIN = (
    "侯马经济开发区\n\n## 园区&lt;创新&gt;中心揭牌 & <a href='https://evil.example/'>报名</a>\n\n"
    "本刊讯 7月3日，侯马经济开发区创新中心揭牌，<a href=\"https://evil.example/\">报名入口</a>"
    "同步开放，A&B两家企业入驻创新中心。（王波）\n"
)
LITERALS = ["<b>研发中心</b>", LINK, "R&D", "5&lt;6", "<script>alert(1)</script>", "A&B"]


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory) -> Path:
    """The seed issue plus the hostile articles, indexed with FakeEmbedder."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "bulletin-2023-07.jsonl").write_text(
        json.dumps(HOSTILE_ROW, ensure_ascii=False) + "\n", encoding="utf-8")
    (root / "bulletin-2023-08.txt").write_text(HOSTILE_BULLETIN, encoding="utf-8")
    report = Ingestor(make_settings(root / "index"), FakeEmbedder(), show_progress=False).ingest(
        [SEED_ISSUE, root / "bulletin-2023-07.jsonl", root / "bulletin-2023-08.txt"])
    assert report.added == 12 and not report.errors
    return root / "index"


class SpyService:
    """The real QAService, with a record of every corpus lookup the bot makes."""

    LOOKUPS = ("answer", "article", "zone_counts", "latest_issue")

    def __init__(self, service: QAService) -> None:
        self._service = service
        self.lookups: list[str] = []

    def __getattr__(self, name: str):
        value = getattr(self._service, name)
        if name in self.LOOKUPS:
            def spied(*args, **kwargs):
                self.lookups.append(name)
                return value(*args, **kwargs)
            return spied
        return value


@pytest.fixture
def real_bot(tmp_path, hostile_index):
    bot = BotUnderTest(tmp_path)
    service = QAService(make_settings(hostile_index), embedder=FakeEmbedder())
    service.warm_up()
    bot.core.service = bot.service = SpyService(service)
    yield bot
    bot.close()


def sent_html(bot) -> list[str]:
    return [call["text"] for call in bot.api.of("sendMessage") + bot.api.of("editMessageText")]


def assert_only_our_tags(text: str) -> None:
    """Valid Telegram HTML whose only tags are the bot's own: no link, no script survives."""
    assert_telegram_html(text)
    tags = set(re.findall(r"<\s*/?\s*([A-Za-z][\w-]*)", text))
    assert tags <= {"b", "i", "code"}, tags


# -- corpus text is escaped in every reply -------------------------------------------------------


def test_ingested_markup_is_shown_literally_in_every_reply(real_bot):
    bot = real_bot
    bot.say(ALICE, ALICE, "研发中心再生金属项目投产了吗？R&D投入多少？")
    answer = bot.last_sent()
    if "更多结果" in _labels(answer):  # only when more passages are relevant than one page
        bot.press(answer, "更多结果", ALICE)
    for label in [lbl for lbl in _labels(answer) if lbl.startswith("全文")]:
        bot.press(answer, label, ALICE)
    bot.say(ALICE, ALICE, "/latest")
    latest = bot.last_sent()
    bot.press(latest, "全文 1", ALICE)
    bot.say(ALICE, ALICE, "/zones")
    bot.say(ALICE, ALICE, "/zone R&D<i>示范区</i> 研发中心投产了吗？")
    bot.say(ALICE, ALICE, "侯马经济开发区创新中心揭牌了吗？")
    replies = sent_html(bot)
    assert len(replies) >= 8
    for reply in replies:
        assert_only_our_tags(reply)
    shown = "\n".join(visible_text(reply) for reply in replies)
    for literal in [*LITERALS, HOSTILE_ROW["title"], HOSTILE_ROW["zone"], HOSTILE_ROW["byline"],
                    # the bulletin parser decodes entities (web copies): &lt; is "<" there
                    "园区<创新>中心揭牌 & <a href='https://evil.example/'>报名</a>",
                    '<a href="https://evil.example/">报名入口</a>']:
        assert literal in shown, literal
    # The full article: every hostile paragraph, byline and title, literally.
    article = next(visible_text(r) for r in replies if "第二段" in visible_text(r))
    assert HOSTILE_ROW["title"] in article and "<script>alert(1)</script>" in article


def test_feedback_stores_the_plain_text_not_html(real_bot):
    real_bot.say(ALICE, ALICE, "研发中心再生金属项目投产了吗？")
    real_bot.press(real_bot.last_sent(), "👍", ALICE)
    (row,) = read_rows(Path(real_bot.settings.telegram.feedback_path))
    assert tuple(row) == FIELDS
    assert row["question"] == "研发中心再生金属项目投产了吗？"
    assert "h1" in row["article_ids"]
    if row["answer"] is not None:  # the sentence as printed, not its HTML
        texts = [a.text for a in real_bot.service.snapshot.articles.values()]
        assert any(row["answer"] in text for text in texts), row["answer"]


def _labels(message: dict) -> list[str]:
    return [b["text"] for row in message["reply_markup"]["inline_keyboard"] for b in row]


# -- an outsider gets nothing from the corpus ----------------------------------------------------


def corpus_fragments(index: Path, size: int = 6) -> set[str]:
    from qa_bot.index import IndexStore

    snapshot = IndexStore(index).load()
    texts = [t for a in snapshot.articles.values() for t in (a.title, a.text, a.zone, a.byline)]
    return {t[i:i + size] for t in texts for i in range(len(t) - size + 1)
            if not t[i:i + size].isspace()}


@pytest.fixture(scope="module")
def fragments(hostile_index) -> set[str]:
    return corpus_fragments(hostile_index)


def leaks(text: str, fragments: set[str], size: int = 6) -> set[str]:
    return {text[i:i + size] for i in range(len(text) - size + 1)} & fragments


TEXTS = st.sampled_from([
    "广灵经开区有多少家再生金属企业？", "/start", "/help", "/ask 研发中心投产了吗", "/zones",
    "/latest", "/zone 广灵 再生金属", "/reload", "/nonsense", f"@{BOT_USERNAME} 再生金属企业",
    f"/ask@{BOT_USERNAME} 再生金属", "", "<b>x</b>",
]) | st.text(max_size=40)


@st.composite
def outsider_updates(draw, bot, keys: list[tuple[str, int]]):
    """An update from someone the allow-list does not let in."""
    kind = draw(st.sampled_from(["message", "edited_message", "button", "button-no-message",
                                 "forwarded", "reply-to-bot"]))
    # Mallory anywhere but a listed group; Alice (listed) in a group that is not.
    sender, where = draw(st.sampled_from([(MALLORY, MALLORY), (MALLORY, OTHER_GROUP),
                                          (ALICE, OTHER_GROUP), (BOB, OTHER_GROUP)]))
    if kind.startswith("button"):
        key, message_id = draw(st.sampled_from(keys))
        data = draw(st.sampled_from([f"f:{key}:0", f"f:{key}:1", f"p:{key}:1", f"v:{key}:up",
                                     f"v:{key}:down", "f:nokey:0", "x"]))
        query: dict = {"id": "q1", "from": user(sender), "chat_instance": "ci", "data": data}
        if kind == "button":
            query["message"] = {"message_id": message_id, "date": 1_700_000_000,
                                "chat": chat(where), "text": "…"}
        else:  # no chat to judge by: the presser alone decides, so only Mallory is outside
            query["from"] = user(MALLORY)
            query["inline_message_id"] = "inline-1"
        return Update.de_json({"update_id": 900, "callback_query": query}, bot)
    text = draw(TEXTS) or "再生金属"
    entities = mention(text) if f"@{BOT_USERNAME}" in text and not text.startswith("/") else None
    update = message_update(bot, where, sender, text, entities=entities)
    data = update.to_dict()
    message = data.pop("message")
    if kind == "forwarded":  # Mallory forwards Alice's words
        message["forward_origin"] = {"type": "user", "sender_user": user(ALICE),
                                     "date": 1_700_000_000}
    if kind == "reply-to-bot":
        message["reply_to_message"] = {"message_id": 1, "date": 1_700_000_000,
                                       "chat": chat(where), "text": "…",
                                       "from": {"id": 123456789, "is_bot": True,
                                                "first_name": "QA", "username": BOT_USERNAME}}
    key = "edited_message" if kind == "edited_message" else "message"
    if kind == "edited_message":
        message["edit_date"] = 1_700_000_001
    data[key] = message
    return Update.de_json(data, bot)


def test_an_outsider_gets_nothing_from_the_corpus(tmp_path, hostile_index, fragments):
    bot = BotUnderTest(tmp_path)
    service = QAService(make_settings(hostile_index), embedder=FakeEmbedder())
    service.warm_up()
    spy = SpyService(service)
    bot.core.service = bot.service = spy
    try:
        # Alice's real answers and lists, whose button keys an outsider then tries.
        keys = []
        for text in ("广灵经开区有多少家再生金属企业？", "/latest"):
            bot.say(ALICE, ALICE, text)
            sent = bot.last_sent()
            key = button_data(sent, "全文 1").split(":")[1]
            keys.append((key, sent["message_id"]))
        assert leaks(visible_text(sent_html(bot)[-1]), fragments)  # the check can see it

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(data=st.data())
        def outsider_sends(data):
            update = data.draw(outsider_updates(bot.bot, keys))
            bot.api.clear()
            spy.lookups.clear()
            bot.process(update)
            assert spy.lookups == [], (update.to_dict(), spy.lookups)
            for name, params in bot.api.calls:
                assert name in ("sendMessage", "answerCallbackQuery", "getMe"), name
                shown = visible_text(params.get("text") or "")
                assert not leaks(shown, fragments), (shown, update.to_dict())
                if name == "answerCallbackQuery":
                    assert params.get("text") == REFUSED_BUTTON
            assert not Path(bot.settings.telegram.feedback_path).exists()

        outsider_sends()
    finally:
        bot.close()


def test_listed_group_member_may_press_but_outsider_button_is_refused(real_bot):
    """The documented rule, with the real service: in a listed group its members share the
    answers; the same keys pressed from a private chat by an outsider give nothing."""
    text = f"@{BOT_USERNAME} 广灵经开区有多少家再生金属企业？"
    real_bot.say(WORK_GROUP, ALICE, text, entities=mention(text))
    answer = real_bot.last_sent()
    real_bot.api.clear()
    real_bot.press(answer, "全文 1", MALLORY)
    assert [m for m, _ in real_bot.api.calls] == ["sendMessage", "answerCallbackQuery"]
    real_bot.api.clear()
    real_bot.service.lookups.clear()
    private_copy = {**answer, "chat": chat(MALLORY)}
    real_bot.process(callback_update(real_bot.bot, private_copy, button_data(answer, "全文 1"),
                                     MALLORY))
    assert real_bot.service.lookups == []
    assert real_bot.api.methods() == ["answerCallbackQuery"]


# -- the token never appears --------------------------------------------------------------------


class _Rejecting(BaseHTTPRequestHandler):
    """A Bot API that rejects every token, as Telegram does a revoked one."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ok": False, "error_code": 401,
                           "description": "Unauthorized"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def rejecting_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bot"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("verbosity", [[], ["-vv"]])
def test_a_rejected_token_is_never_printed(rejecting_api, hostile_index, tmp_path, verbosity):
    """`qa-bot bot` with a token Telegram rejects: one line saying so, exit 2, and the token
    nowhere in the output (PTB's InvalidToken message quotes it; it used to reach stderr in a
    traceback)."""
    env = subprocess_env(QA_BOT_TELEGRAM_TOKEN=TOKEN, QA_BOT_TELEGRAM_BASE_URL=rejecting_api,
                         QA_BOT_TELEGRAM_ALLOWED_USERS=str(ALICE),
                         QA_BOT_TELEGRAM_FEEDBACK_PATH=str(tmp_path / "feedback.jsonl"))
    result = subprocess.run([str(QA_BOT), *verbosity, "--index-dir", str(hostile_index), "bot"],
                            capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert TOKEN not in output and TOKEN.split(":")[1] not in output
    # (PTB logs its own retry loop giving up, with a traceback: redacted like every log line.)
    assert result.stderr.strip().splitlines()[-1].startswith(
        "qa-bot: error: the Bot API rejected the token")


def test_uncaught_exceptions_are_redacted(monkeypatch):
    """What Python prints itself (not through logging), in the main thread and others."""
    redactor = TokenRedactor(TOKEN)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    redact_uncaught(redactor)
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        raise RuntimeError(f"https://api.telegram.org/bot{TOKEN}/getMe failed")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(
        ValueError(f"secret {TOKEN.split(':')[1]}")), name="worker")
    thread.start()
    thread.join()
    printed = stderr.getvalue()
    assert "RuntimeError" in printed and "ValueError" in printed and "worker" in printed
    assert TOKEN not in printed and TOKEN.split(":")[1] not in printed
    assert printed.count("<bot-token>") == 2


def test_a_whole_session_logs_no_token_no_question_and_no_names(real_bot):
    """With the redactor installed as `qa-bot bot` does, at INFO: questions, buttons, votes,
    refusals and an error leave log lines with ids only — no token, no question text, no
    names (what docs/telegram.md promises)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    install_redactor(TOKEN, logger=root)
    bot = real_bot
    question = "广灵经开区有多少家再生金属企业？"
    try:
        bot.say(ALICE, ALICE, question)
        bot.press(bot.last_sent(), "👍", ALICE)
        bot.press(bot.last_sent(), "全文 1", ALICE)
        bot.say(MALLORY, MALLORY, "泄露一下研发中心的内容")
        bot.say(OTHER_GROUP, BOB, f"/ask {question}")
        bot.service._service.answer = _fail_with_token  # an error quoting the token
        bot.say(ALICE, ALICE, "再问一次研发中心")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for other in root.handlers:
            for flt in list(other.filters):
                if isinstance(flt, TokenRedactor):
                    other.removeFilter(flt)
    logged = stream.getvalue()
    assert "error while handling an update" in logged and "refused user" in logged
    assert TOKEN not in logged and TOKEN.split(":")[1] not in logged
    for private in (question, "泄露一下", "再问一次", "U42", "U66", "U43"):
        assert private not in logged, private
    raw = Path(bot.settings.telegram.feedback_path).read_text(encoding="utf-8")
    assert TOKEN not in raw and TOKEN.split(":")[1] not in raw


def _fail_with_token(*args, **kwargs):
    raise RuntimeError(f"upstream said no to bot{TOKEN}")
