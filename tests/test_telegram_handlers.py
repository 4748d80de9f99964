"""Handler-level tests of the Telegram bot, offline and fast, in python-telegram-bot's own style.

Updates are built by hand (`Update.de_json`), every Bot API request goes to `FakeBotAPI` (a
`telegram.request.BaseRequest` that records the call and answers canned JSON), and the answer
service is `FakeService`, which returns Answers built from records: no model, no network.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from telegram import Update
from telegram.error import NetworkError
from telegram.ext import Application
from telegram.request import BaseRequest

from qa_bot.config import ConfigError, Settings, TelegramSettings, load_settings
from qa_bot.records import Answer, AnswerSentence, Article, Chunk, Hit
from qa_bot.service import QuestionError, UnknownZone
from qa_bot.telegram import render_html
from qa_bot.telegram.access import AccessPolicy, RateLimiter, TokenRedactor, install_redactor
from qa_bot.telegram.app import QABot, build_application, check_settings
from qa_bot.telegram.feedback import FIELDS, FeedbackStore, export_rows, read_rows
from qa_bot.telegram.render_html import (
    MAX_MESSAGE_CHARS,
    TELEGRAM_TAGS,
    answer_html,
    article_html,
    split_html,
    utf16_len,
    visible_text,
)
from qa_bot.telegram.texts import APOLOGY, COMMANDS, EXPIRED, REFUSED_BUTTON

TOKEN = "123456789:AAHsecretPartOfTheTestToken_xyz"
BOT_ID, BOT_USERNAME = 123456789, "QaTestBot"
ALICE, BOB, MALLORY = 42, 43, 66  # Alice and Bob are listed, Mallory is not
ADMIN = ALICE
WORK_GROUP, OTHER_GROUP = -1001, -2002
QUESTION = "广灵经开区有多少家再生金属企业？"

# -- records with hostile text: tags, a link and ampersands in corpus text --------------------
HOSTILE = '含<b>粗体</b>、<a href="https://evil.example/">链接</a>和 R&D & 其他'


def make_article(n: int, text: str | None = None, zone: str = "广灵经济技术开发区") -> Article:
    return Article(
        article_id=f"bulletin-2023-06/{n}",
        issue="bulletin-2023-06",
        title=f"标题{n} <i>斜</i> & 副",
        text=text or f"第{n}篇的第一句。{HOSTILE}。目前全区已有再生金属企业13家。",
        zone=zone,
        byline="王云霞 & <u>某某</u>",
        line=n,
    )


ARTICLES = {a.article_id: a for a in (make_article(n) for n in range(1, 8))}


def chunk_of(article: Article) -> Chunk:
    return Chunk(article.article_id, 0, article.text, 0, len(article.text), article.issue,
                 article.title, article.zone, article.byline)


def make_answer(question: str, passages: int = 5) -> Answer:
    # Scores close together: every passage is relevant (none is cut from under the answer).
    hits = [Hit(chunk_of(a), 1.0 - 0.05 * i) for i, a in enumerate(ARTICLES.values())]
    sentence_text = f"{HOSTILE}，目前全区已有再生金属企业13家，其中已投产4家。"
    start = sentence_text.index("13家")
    sentence = AnswerSentence(sentence_text, hits[0].chunk, (start, start + 3), 0.9)
    return Answer(question, sentence, hits[:passages])


class FakeSnapshot:
    name = "snap-1"


class FakeService:
    """The methods of QAService the bot may call, with canned results."""

    def __init__(self) -> None:
        self.questions: list[tuple[str, int | None, str | None]] = []
        self.snapshot = FakeSnapshot()
        self.reloads = 0
        self.fail_with: Exception | None = None
        self.articles = dict(ARTICLES)
        self.conversations: list[Any] = []  # the conversation passed with each question

    def warm_up(self) -> None:
        pass

    def answer(self, question: str, k: int | None = None, zone: str | None = None,
               conversation: Any = None) -> Answer:
        self.questions.append((question, k, zone))
        self.conversations.append(conversation)
        if self.fail_with is not None:
            raise self.fail_with
        if not re.search(r"\w", question):
            raise QuestionError("empty")
        if zone and zone not in ("广灵", "广灵经济技术开发区"):
            raise UnknownZone(zone)
        if "没有" in question:
            return Answer(question, None, [Hit(chunk_of(a), 0.1) for a in ARTICLES.values()][:2],
                          "没有足够相关的段落")
        return make_answer(question)

    def article(self, article_id: str) -> Article | None:
        return self.articles.get(article_id)

    def zone_counts(self) -> list[tuple[str, int]]:
        return [("广灵经济技术开发区", 7), ("R&D <区>", 1)]

    def latest_issue(self) -> tuple[str, list[Article]]:
        return "bulletin-2023-06", list(ARTICLES.values())

    def reload_if_changed(self) -> bool:
        self.reloads += 1
        self.snapshot.name = f"snap-{self.reloads + 1}"
        return True


# -- the Bot API, faked -----------------------------------------------------------------------
class FakeBotAPI(BaseRequest):
    """Records every Bot API call and answers like Telegram would (or fails on demand)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail: dict[str, Exception] = {}
        self._ids = itertools.count(5000)
        self.sent: dict[int, dict] = {}

    @property
    def read_timeout(self) -> float:
        return 1.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(self, url, method, request_data=None, read_timeout=None,
                         write_timeout=None, connect_timeout=None, pool_timeout=None):
        endpoint = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data else {}
        self.calls.append((endpoint, params))
        if endpoint in self.fail:
            raise self.fail[endpoint]
        if endpoint == "getMe":
            result: Any = {"id": BOT_ID, "is_bot": True, "first_name": "QA",
                           "username": BOT_USERNAME}
        elif endpoint in ("sendMessage", "editMessageText"):
            message_id = int(params.get("message_id") or next(self._ids))
            chat_id = int(params["chat_id"]) if "chat_id" in params else self.sent[message_id][
                "chat"]["id"]
            result = {
                "message_id": message_id,
                "date": 1_700_000_000,
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "QA",
                         "username": BOT_USERNAME},
                "text": visible_text(params["text"]),
            }
            if "reply_markup" in params:
                result["reply_markup"] = params["reply_markup"]
            self.sent[message_id] = result
        else:
            result = True
        return 200, json.dumps({"ok": True, "result": result}).encode()

    # -- reading what the bot did --
    def of(self, endpoint: str) -> list[dict]:
        return [params for name, params in self.calls if name == endpoint]

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls if name != "getMe"]

    def texts(self) -> list[str]:
        return [p["text"] for p in self.of("sendMessage")]

    def clear(self) -> None:
        self.calls.clear()


# -- updates built by hand --------------------------------------------------------------------
_update_ids = itertools.count(1)
_message_ids = itertools.count(1)


def user(user_id: int) -> dict:
    return {"id": user_id, "is_bot": False, "first_name": f"U{user_id}"}


def chat(chat_id: int) -> dict:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": f"U{chat_id}"}
    return {"id": chat_id, "type": "supergroup", "title": f"G{chat_id}"}


def message_update(bot, chat_id: int, user_id: int, text: str, entities=None,
                   reply_to: dict | None = None) -> Update:
    message: dict = {
        "message_id": next(_message_ids), "date": 1_700_000_000, "chat": chat(chat_id),
        "from": user(user_id), "text": text,
    }
    if text.startswith("/") and entities is None:
        command = text.split()[0]
        entities = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    if entities:
        message["entities"] = entities
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    return Update.de_json({"update_id": next(_update_ids), "message": message}, bot)


def mention(text: str, handle: str = BOT_USERNAME) -> list[dict]:
    at = "@" + handle
    return [{"type": "mention", "offset": utf16_len(text[: text.index(at)]),
             "length": utf16_len(at)}]


def callback_update(bot, message: dict, data: str, user_id: int) -> Update:
    query = {"id": str(next(_update_ids)), "from": user(user_id), "chat_instance": "ci",
             "message": message, "data": data}
    return Update.de_json({"update_id": next(_update_ids), "callback_query": query}, bot)


def button_data(message: dict, label: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for button in row:
            if button["text"] == label:
                return button["callback_data"]
    raise LookupError(label)


def labels(message: dict) -> list[str]:
    return [b["text"] for row in message["reply_markup"]["inline_keyboard"] for b in row]


# -- Telegram HTML, checked like Telegram does ------------------------------------------------
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_ATTRS = {"a": {"href"}, "span": {"class"}, "code": {"class"}, "tg-emoji": {"emoji-id"},
          "blockquote": {"expandable"}}


class TelegramHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in TELEGRAM_TAGS:
            self.problems.append(f"tag <{tag}> is not allowed")
        for name, _ in attrs:
            if name not in _ATTRS.get(tag, set()):
                self.problems.append(f"attribute {name} on <{tag}>")
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def assert_telegram_html(text: str) -> None:
    parser = TelegramHTML()
    parser.feed(text)
    parser.close()
    assert not parser.problems, (parser.problems, text)
    assert not parser.stack, f"unclosed {parser.stack}: {text!r}"
    bare = re.sub(r"</?[a-z][\w-]*(\s[^<>]*)?>", "", text)
    assert "<" not in bare and ">" not in bare, f"unescaped < or > in {text!r}"
    assert not re.search(r"&(?!(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);)", bare), text
    assert utf16_len(text) <= MAX_MESSAGE_CHARS
    assert visible_text(text).strip(), "empty message"


# -- fixtures ---------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BotUnderTest:
    """An Application built by qa_bot with the fake API and service, driven update by update."""

    def __init__(self, tmp_path: Path, **telegram: Any) -> None:
        options = {
            "token": TOKEN, "allowed_users": (ALICE, BOB), "allowed_chats": (WORK_GROUP,),
            "admin_users": (ADMIN,), "rate_limit_per_minute": 100,
            "feedback_path": str(tmp_path / "feedback.jsonl"), "reload_check_seconds": 0.0,
            "flood_control": False, **telegram,
        }
        self.settings = Settings(telegram=TelegramSettings(**options))
        self.api = FakeBotAPI()
        self.service = FakeService()
        self.clock = Clock()
        builder = (Application.builder().token(TOKEN).request(self.api)
                   .get_updates_request(FakeBotAPI()))
        self.app = build_application(self.settings, service=self.service, builder=builder,
                                     clock=self.clock)
        self.core: QABot = self.app.bot_data["qa_bot"]
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.app.initialize())

    @property
    def bot(self):
        return self.app.bot

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def process(self, update: Update) -> None:
        self.run(self.app.process_update(update))

    def say(self, chat_id: int, user_id: int, text: str, **kwargs: Any) -> None:
        self.process(message_update(self.bot, chat_id, user_id, text, **kwargs))

    def press(self, message: dict, label: str, user_id: int) -> None:
        self.process(callback_update(self.bot, message, button_data(message, label), user_id))

    def last_sent(self) -> dict:
        return self.api.sent[max(self.api.sent)]

    def close(self) -> None:
        self.run(self.app.shutdown())
        self.loop.close()


@pytest.fixture
def tb(tmp_path):
    bot = BotUnderTest(tmp_path)
    yield bot
    bot.close()


@pytest.fixture
def make_tb(tmp_path):
    made = []

    def make(**telegram):
        made.append(BotUnderTest(tmp_path, **telegram))
        return made[-1]

    yield make
    for bot in made:
        bot.close()


# =============================================================================================
# Replies: HTML, escaping, buttons
# =============================================================================================
def test_private_question_gets_escaped_html_answer_with_bold_span(tb):
    tb.say(ALICE, ALICE, QUESTION)
    assert tb.service.questions == [(QUESTION, None, None)]  # same call as `qa-bot ask`
    assert tb.api.methods() == ["sendChatAction", "sendMessage"]  # typing first
    assert tb.api.of("sendChatAction")[0]["action"] == "typing"
    (sent,) = tb.api.of("sendMessage")
    assert sent["parse_mode"] == "HTML"
    text = sent["text"]
    assert_telegram_html(text)
    assert re.findall(r"<b>(.*?)</b>", text) == ["13家"]  # only the key span is bold
    assert "&lt;b&gt;粗体&lt;/b&gt;" in text
    assert '&lt;a href="https://evil.example/"&gt;链接&lt;/a&gt;' in text
    assert "R&amp;D &amp; 其他" in text and "<a " not in text
    assert "王云霞 &amp; &lt;u&gt;某某&lt;/u&gt;" in text  # the byline, escaped
    assert "广灵经济技术开发区 · 标题1 &lt;i&gt;斜&lt;/i&gt; &amp; 副" in text
    assert "相关段落（1–3 / 5）" in text
    assert labels(tb.last_sent()) == ["全文 1", "全文 2", "全文 3", "更多结果", "👍", "👎"]


def test_declined_answer_lists_nearest_articles(tb):
    tb.say(ALICE, ALICE, "没有答案的问题")
    text = tb.api.texts()[-1]
    assert_telegram_html(text)
    assert text.startswith("🤔 没有找到能回答这个问题的内容（没有足够相关的段落）")
    assert "<b>" not in text
    assert labels(tb.last_sent()) == ["全文 1", "全文 2", "👍", "👎"]


def test_more_results_pages_by_editing_the_answer(tb):
    tb.say(ALICE, ALICE, QUESTION)
    answer_message = tb.last_sent()
    tb.api.clear()
    tb.press(answer_message, "更多结果", ALICE)
    (edit,) = tb.api.of("editMessageText")
    assert edit["message_id"] == answer_message["message_id"]
    assert_telegram_html(edit["text"])
    assert "相关段落（4–5 / 5）" in edit["text"] and "[4]" in edit["text"]
    assert "<b>13家</b>" in edit["text"]  # the answer stays on top
    page2 = tb.api.sent[answer_message["message_id"]]
    assert labels(page2) == ["全文 4", "全文 5", "上一页", "👍", "👎"]
    assert tb.api.methods()[-1] == "answerCallbackQuery"
    tb.press(page2, "上一页", ALICE)
    assert "相关段落（1–3 / 5）" in tb.api.of("editMessageText")[-1]["text"]
    assert len(tb.service.questions) == 1  # paging never asks the service again


def test_full_article_is_escaped_split_and_replies_to_the_answer(tb):
    long_text = "\n".join(f"第{i}段：{HOSTILE}。" + "这是一句很长的话，" * 40 for i in range(30))
    tb.service.articles["bulletin-2023-06/1"] = make_article(1, long_text)
    tb.say(ALICE, ALICE, QUESTION)
    answer_message = tb.last_sent()
    tb.api.clear()
    tb.press(answer_message, "全文 1", ALICE)
    parts = tb.api.of("sendMessage")
    assert len(parts) > 1
    for part in parts:
        assert_telegram_html(part["text"])
    assert json.loads(json.dumps(parts[0]["reply_parameters"]))["message_id"] == answer_message[
        "message_id"]
    shown = "".join(visible_text(p["text"]) for p in parts)
    assert re.sub(r"\s", "", shown) == re.sub(
        r"\s", "", visible_text(article_html(tb.service.articles["bulletin-2023-06/1"])))
    assert tb.api.methods()[-1] == "answerCallbackQuery"


def test_commands_zones_latest_help_start(tb):
    tb.say(ALICE, ALICE, "/zones")
    zones = tb.api.texts()[-1]
    assert_telegram_html(zones)
    assert "广灵经济技术开发区：7 篇" in zones and "R&amp;D &lt;区&gt;：1 篇" in zones
    tb.say(ALICE, ALICE, "/latest")
    latest = tb.api.texts()[-1]
    assert_telegram_html(latest)
    assert "最新一期：bulletin-2023-06（7 篇）" in latest
    assert labels(tb.last_sent())[:2] == ["全文 1", "全文 2"]
    tb.api.clear()
    tb.press(tb.last_sent(), "全文 7", ALICE)
    assert "标题7" in tb.api.texts()[0]
    for command in ("/help", "/start"):
        tb.say(ALICE, ALICE, command)
        assert_telegram_html(tb.api.texts()[-1])
    assert "/zone 长治" in tb.api.texts()[-2]  # help has examples


def test_zone_command_and_usage(tb):
    tb.say(ALICE, ALICE, "/zone 广灵 有多少家企业？")
    assert tb.service.questions[-1] == ("有多少家企业？", None, "广灵")
    tb.say(ALICE, ALICE, "/zone 火星 有多少家企业？")
    assert "公报里没有叫“火星”的开发区" in tb.api.texts()[-1]
    tb.say(ALICE, ALICE, "/zone 广灵")
    assert tb.api.texts()[-1].startswith("用法：/zone")
    tb.say(ALICE, ALICE, "/ask")
    assert tb.api.texts()[-1].startswith("用法：/ask")
    tb.say(ALICE, ALICE, "？？？")
    assert tb.api.texts()[-1].startswith("请发一个问题")


def test_max_passages_setting_is_passed_as_k(make_tb):
    tb = make_tb(max_passages=9)
    tb.say(ALICE, ALICE, QUESTION)
    assert tb.service.questions == [(QUESTION, 9, None)]


def test_set_my_commands_in_post_init(tb):
    tb.run(tb.app.post_init(tb.app))
    (registered,) = tb.api.of("setMyCommands")
    names = [c["command"] for c in registered["commands"]]
    assert names == [c.command for c in COMMANDS]
    assert {"start", "help", "ask", "zones", "latest", "zone"} <= set(names)
    assert "reload" not in names  # admin-only, not advertised


# =============================================================================================
# Access
# =============================================================================================
CORPUS_MARKERS = ("13家", "标题", "广灵", "粗体", "bulletin")


def assert_refusal_only(tb, expected: str) -> None:
    texts = tb.api.texts()
    assert len(texts) == 1, texts
    assert expected in texts[0]
    assert not any(marker in texts[0] for marker in CORPUS_MARKERS)
    assert tb.service.questions == []


@pytest.mark.parametrize("text", [
    QUESTION, "/start", "/help", f"/ask {QUESTION}", "/zones", "/latest",
    f"/zone 广灵 {QUESTION}", "/reload", "/nonsense",
])
def test_unlisted_user_is_refused_in_private(tb, text):
    tb.say(MALLORY, MALLORY, text)
    assert_refusal_only(tb, f"你还没有使用这个机器人的权限。如需开通，请把你的用户 ID "
                            f"<code>{MALLORY}</code>")


@pytest.mark.parametrize("text,entities", [
    (f"@{BOT_USERNAME} {QUESTION}", mention(f"@{BOT_USERNAME} {QUESTION}")),
    (f"/ask@{BOT_USERNAME} {QUESTION}", None),
    ("/zones", None),
])
def test_unlisted_group_is_refused_even_for_a_listed_user(tb, text, entities):
    tb.say(OTHER_GROUP, ALICE, text, entities=entities)
    assert_refusal_only(tb, f"本群还没有开通问答机器人。如需开通，请管理员把群 ID "
                            f"<code>{OTHER_GROUP}</code>")


def test_unlisted_user_in_a_listed_group_is_answered(tb):
    tb.say(WORK_GROUP, MALLORY, f"/ask {QUESTION}")
    assert tb.service.questions == [(QUESTION, None, None)]


def test_button_pressed_by_an_unlisted_user_is_refused(tb):
    tb.say(ALICE, ALICE, QUESTION)
    answer_message = tb.last_sent()
    tb.api.clear()
    for label in ("更多结果", "全文 1", "👍"):
        tb.press(answer_message, label, MALLORY)
    assert tb.api.methods() == ["answerCallbackQuery"] * 3
    for call in tb.api.of("answerCallbackQuery"):
        assert call["text"] == REFUSED_BUTTON and call["show_alert"] is True
    assert not Path(tb.settings.telegram.feedback_path).exists()


def test_button_in_an_unlisted_group_is_refused(tb):
    message = {"message_id": 7, "date": 1_700_000_000, "chat": chat(OTHER_GROUP),
               "text": "x", "reply_markup": {"inline_keyboard": [[
                   {"text": "全文 1", "callback_data": "f:whatever:0"}]]}}
    tb.press(message, "全文 1", ALICE)
    assert tb.api.of("answerCallbackQuery")[0]["text"] == REFUSED_BUTTON


def test_open_to_everyone_answers_anyone(make_tb):
    tb = make_tb(allowed_users=(), allowed_chats=(), open_to_everyone=True)
    tb.say(MALLORY, MALLORY, QUESTION)
    tb.say(OTHER_GROUP, MALLORY, f"/ask {QUESTION}")
    assert len(tb.service.questions) == 2


def test_access_policy_rules():
    policy = AccessPolicy(users=[ALICE], chats=[WORK_GROUP, BOB])
    assert policy.allows(ALICE, ALICE, "private")
    assert policy.allows(BOB, BOB, "private")  # a private chat id listed as a chat
    assert not policy.allows(MALLORY, MALLORY, "private")
    assert not policy.allows(MALLORY, ALICE, "private")  # someone else's private chat id
    assert policy.allows(MALLORY, WORK_GROUP, "group")
    assert not policy.allows(ALICE, OTHER_GROUP, "supergroup")
    assert not policy.allows(None, None, None)


def test_reload_is_admin_only(tb):
    tb.say(BOB, BOB, "/reload")
    assert tb.api.texts()[-1] == "只有管理员可以使用 /reload。"
    assert tb.service.reloads == 0
    tb.say(ADMIN, ADMIN, "/reload")
    assert tb.service.reloads == 1
    assert tb.api.texts()[-1] == "✅ 已加载新索引：snap-2"


def test_reload_failure_keeps_serving(tb):
    def broken() -> bool:
        raise RuntimeError("manifest <broken>")

    tb.service.reload_if_changed = broken
    tb.say(ADMIN, ADMIN, "/reload")
    assert "新索引加载失败，仍在使用原来的索引：manifest &lt;broken&gt;" in tb.api.texts()[-1]
    tb.say(ADMIN, ADMIN, QUESTION)
    assert "<b>13家</b>" in tb.api.texts()[-1]


# =============================================================================================
# Rate limit
# =============================================================================================
def test_rate_limit_is_per_user_and_polite(make_tb):
    tb = make_tb(rate_limit_per_minute=2)
    for _ in range(4):
        tb.say(ALICE, ALICE, QUESTION)
    assert len(tb.service.questions) == 2
    texts = tb.api.texts()
    assert len(texts) == 3  # two answers, one notice; the 4th question gets nothing more
    assert texts[2] == "提问有点快了，请 60 秒后再问。🙏"
    tb.say(BOB, BOB, QUESTION)  # others are not affected
    assert len(tb.service.questions) == 3
    tb.clock.now += 60
    tb.say(ALICE, ALICE, QUESTION)
    assert len(tb.service.questions) == 4
    assert "<b>13家</b>" in tb.api.texts()[-1]


def test_rate_limiter_window():
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.check(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 20
    assert limiter.check(1) == pytest.approx(40.0)
    assert limiter.should_warn(1, 40.0) and not limiter.should_warn(1, 40.0)
    clock.now += 40
    assert limiter.check(1) == 0.0
    assert RateLimiter(0, clock).check(1) == 0.0  # 0 = no limit


# =============================================================================================
# Groups
# =============================================================================================
def test_group_message_without_mention_gets_no_reply(tb):
    tb.say(WORK_GROUP, ALICE, QUESTION)
    tb.say(WORK_GROUP, ALICE, f"@SomeOtherBot {QUESTION}", entities=mention(
        f"@SomeOtherBot {QUESTION}", "SomeOtherBot"))
    tb.say(WORK_GROUP, ALICE, f"/ask@SomeOtherBot {QUESTION}")
    tb.say(WORK_GROUP, ALICE, "回复别人", reply_to={
        "message_id": 1, "date": 1_700_000_000, "chat": chat(WORK_GROUP), "from": user(BOB),
        "text": "hi"})
    assert tb.api.calls == [c for c in tb.api.calls if c[0] == "getMe"]
    assert tb.service.questions == []


def test_group_mention_is_answered_without_the_mention(tb):
    text = f"@{BOT_USERNAME} {QUESTION}"
    tb.say(WORK_GROUP, ALICE, text, entities=mention(text))
    assert tb.service.questions == [(QUESTION, None, None)]
    sent = tb.api.of("sendMessage")[0]
    assert sent["reply_parameters"]["message_id"] > 0  # quotes the question in groups
    text = f"请问{QUESTION} @{BOT_USERNAME.lower()}"  # anywhere, any case
    tb.say(WORK_GROUP, ALICE, text, entities=mention(text, BOT_USERNAME.lower()))
    assert tb.service.questions[-1][0] == f"请问{QUESTION}"


def test_group_reply_to_the_bot_and_ask_commands_are_answered(tb):
    bot_message = {"message_id": 9, "date": 1_700_000_000, "chat": chat(WORK_GROUP),
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "QA",
                            "username": BOT_USERNAME}, "text": "之前的回答"}
    tb.say(WORK_GROUP, ALICE, "那其中已投产的有几家？", reply_to=bot_message)
    tb.say(WORK_GROUP, BOB, f"/ask {QUESTION}")
    tb.say(WORK_GROUP, BOB, f"/ask@{BOT_USERNAME} {QUESTION}")
    assert [q for q, _, _ in tb.service.questions] == ["那其中已投产的有几家？", QUESTION, QUESTION]


def test_group_mention_alone_gets_help(tb):
    text = f"@{BOT_USERNAME}"
    tb.say(WORK_GROUP, ALICE, text, entities=mention(text))
    assert "怎么提问" in tb.api.texts()[-1]
    assert tb.service.questions == []


def test_button_pressed_by_another_member_of_a_listed_group_works(tb):
    text = f"@{BOT_USERNAME} {QUESTION}"
    tb.say(WORK_GROUP, ALICE, text, entities=mention(text))
    tb.press(tb.last_sent(), "👍", MALLORY)  # the group is listed, so its members are
    assert tb.api.of("answerCallbackQuery")[-1]["text"] == "谢谢反馈！👍"


# =============================================================================================
# Feedback
# =============================================================================================
def test_feedback_rows_hold_exactly_the_agreed_fields(tb):
    tb.say(ALICE, ALICE, QUESTION)
    answer_message = tb.last_sent()
    tb.press(answer_message, "👍", ALICE)
    tb.press(answer_message, "👍", ALICE)  # a double press is recorded once
    tb.press(answer_message, "👎", ALICE)  # a change of mind is recorded
    answers = [c["text"] for c in tb.api.of("answerCallbackQuery")]
    assert answers == ["谢谢反馈！👍", "已经记录过了，谢谢！", "谢谢反馈，我们会改进。👎"]
    rows = list(read_rows(Path(tb.settings.telegram.feedback_path)))
    assert [r["vote"] for r in rows] == ["up", "down"]
    row = rows[0]
    assert tuple(row) == FIELDS
    assert row["question"] == QUESTION and row["user_id"] == ALICE and row["chat_id"] == ALICE
    assert row["answer"] == make_answer(QUESTION).sentence.text
    assert row["article_ids"] == [f"bulletin-2023-06/{n}" for n in range(1, 6)]
    raw = Path(tb.settings.telegram.feedback_path).read_text(encoding="utf-8")
    assert TOKEN not in raw and TOKEN.split(":")[1] not in raw
    assert Path(tb.settings.telegram.feedback_path).stat().st_mode & 0o077 == 0


def test_feedback_export_rows():
    def row(vote, user_id, question, answer, ids=("a/1", "a/2")):
        return {"timestamp": "t", "vote": vote, "user_id": user_id, "chat_id": user_id,
                "question": question, "answer": answer, "article_ids": list(ids)}

    rows = [
        row("up", 1, "q1", "s1"), row("up", 2, "q1", "s1"),
        row("down", 1, "q2", "s2"), row("up", 1, "q2", "s2"),  # changed mind: 👍
        row("up", 1, "q3", "s3"), row("down", 2, "q3", "s3"),  # disputed: review
        row("up", 1, "q4", None),  # a right decline: unanswerable
        row("down", 1, "q5", "s5", ids=("gone/9",)),
        row("up", 1, "q6", "s6", ids=("gone/9",)),  # article no longer indexed
    ]
    titles = {"a/1": "标题一"}
    eval_rows, review = export_rows(rows, titles.get)
    assert eval_rows == [
        {"question": "q1", "title": "标题一", "answers": ["s1"]},
        {"question": "q2", "title": "标题一", "answers": ["s2"]},
        {"question": "q4", "title": None, "answers": None},
        {"question": "q6", "passage_id": "gone/9", "answers": ["s6"]},
    ]
    assert review == [
        {"question": "q3", "rejected_answer": "s3", "rejected_article_ids": ["a/1"],
         "downvotes": 1},
        {"question": "q5", "rejected_answer": "s5", "rejected_article_ids": ["gone/9"],
         "downvotes": 1},
    ]


def test_feedback_export_command(tmp_path, capsys):
    from qa_bot.cli import main
    from qa_bot.evaluate import load_questions

    store = FeedbackStore(tmp_path / "fb.jsonl")
    store.record(vote="up", user_id=1, chat_id=1, question="问一", answer="答一",
                 article_ids=["x/1"])
    store.record(vote="down", user_id=1, chat_id=1, question="问二", answer="答二",
                 article_ids=["x/2"])
    out, review = tmp_path / "eval.jsonl", tmp_path / "review.jsonl"
    code = main(["--index-dir", str(tmp_path / "no-index"), "feedback", "export",
                 "--store", str(store.path), "--out", str(out), "--review", str(review)])
    assert code == 0
    assert "1 eval rows (👍), 1 answers to review (👎)" in capsys.readouterr().err
    (question,) = load_questions(out)  # `qa-bot eval` reads what export writes
    assert question.text == "问一" and question.answers == ("答一",)
    assert question.gold_ids == frozenset({"x/1"})
    assert json.loads(review.read_text(encoding="utf-8"))["question"] == "问二"


# =============================================================================================
# Errors
# =============================================================================================
def test_error_handler_apologises_and_the_bot_keeps_serving(tb, caplog):
    tb.service.fail_with = RuntimeError(f"boom {TOKEN}")
    redactor = TokenRedactor(TOKEN)
    caplog.handler.addFilter(redactor)
    with caplog.at_level(logging.ERROR):
        tb.say(ALICE, ALICE, QUESTION)
    assert tb.api.texts() == [APOLOGY]
    assert "boom" in caplog.text and "RuntimeError" in caplog.text
    assert TOKEN not in caplog.text and "<bot-token>" in caplog.text
    tb.service.fail_with = None
    tb.say(ALICE, ALICE, QUESTION)
    assert "<b>13家</b>" in tb.api.texts()[-1]


def test_error_in_a_button_is_answered_with_an_apology(tb):
    tb.say(ALICE, ALICE, QUESTION)
    answer_message = tb.last_sent()
    tb.api.fail["editMessageText"] = NetworkError("Bad Gateway")
    tb.api.clear()
    tb.press(answer_message, "更多结果", ALICE)
    (call,) = tb.api.of("answerCallbackQuery")
    assert call["text"] == APOLOGY and call["show_alert"] is True


def test_typing_failure_does_not_lose_the_answer(tb):
    tb.api.fail["sendChatAction"] = NetworkError("flaky")
    tb.say(ALICE, ALICE, QUESTION)
    assert "<b>13家</b>" in tb.api.texts()[-1]


def test_expired_buttons(make_tb):
    tb = make_tb(answer_cache_size=2)
    tb.say(ALICE, ALICE, QUESTION)
    first = tb.last_sent()
    tb.say(ALICE, ALICE, QUESTION)
    tb.say(ALICE, ALICE, QUESTION)  # the first answer falls out of the cache
    tb.api.clear()
    tb.press(first, "更多结果", ALICE)
    tb.process(callback_update(tb.bot, first, "junk", ALICE))
    assert [c["text"] for c in tb.api.of("answerCallbackQuery")] == [EXPIRED, EXPIRED]
    assert len(tb.core.entries) == 2


def test_article_gone_after_a_reload(tb):
    tb.say(ALICE, ALICE, QUESTION)
    tb.service.articles.clear()
    tb.press(tb.last_sent(), "全文 1", ALICE)
    assert "已不在索引中" in tb.api.of("answerCallbackQuery")[-1]["text"]


def test_hot_reload_watcher_polls_the_service(make_tb):
    tb = make_tb(reload_check_seconds=0.01)

    async def run_watcher():
        await tb.app.post_init(tb.app)
        await asyncio.sleep(0.1)
        await tb.app.post_stop(tb.app)

    tb.run(run_watcher())
    assert tb.service.reloads >= 2
    assert tb.core._watcher is None


# =============================================================================================
# Settings, token, startup
# =============================================================================================
def test_missing_token_names_the_variable():
    with pytest.raises(ConfigError, match="QA_BOT_TELEGRAM_TOKEN"):
        check_settings(TelegramSettings(allowed_users=(1,)))


def test_empty_allow_list_refuses_to_start_unless_open():
    with pytest.raises(ConfigError, match=r"allow-list is empty.*open_to_everyone"):
        check_settings(TelegramSettings(token=TOKEN))
    check_settings(TelegramSettings(token=TOKEN, open_to_everyone=True))
    with pytest.raises(ConfigError, match="webhook_url"):
        check_settings(TelegramSettings(token=TOKEN, allowed_users=(1,), mode="webhook"))


def test_allow_lists_from_the_environment():
    settings = load_settings(environ={
        "QA_BOT_CONFIG": str(Path(__file__).resolve().parents[1] / "config" / "qa-bot.toml"),
        "QA_BOT_TELEGRAM_TOKEN": TOKEN,
        "QA_BOT_TELEGRAM_ALLOWED_USERS": "42, 43",
        "QA_BOT_TELEGRAM_ALLOWED_CHATS": "-1001",
    })
    assert settings.telegram.allowed_users == (42, 43)
    assert settings.telegram.allowed_chats == (-1001,)


@pytest.mark.parametrize("env,message", [
    ({}, "QA_BOT_TELEGRAM_TOKEN"),
    ({"QA_BOT_TELEGRAM_TOKEN": TOKEN}, "allow-list is empty"),
])
def test_qa_bot_bot_exits_non_zero_with_a_clear_message(monkeypatch, capsys, env, message):
    from qa_bot.cli import main

    for name in ("QA_BOT_TELEGRAM_TOKEN", "QA_BOT_TELEGRAM_ALLOWED_USERS",
                 "QA_BOT_TELEGRAM_ALLOWED_CHATS", "QA_BOT_TELEGRAM_OPEN_TO_EVERYONE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["bot"]) == 2
    err = capsys.readouterr().err
    assert message in err and TOKEN not in err


def test_token_redactor_covers_messages_args_and_tracebacks():
    logger = logging.getLogger("test.redactor")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install_redactor(TOKEN, logger=logger)
        logger.warning("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
        logger.warning("encoded bot123456789%%3A%s", TOKEN.split(":")[1])
        try:
            raise ValueError(f"url with {TOKEN}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert TOKEN not in text and TOKEN.split(":")[1] not in text
    assert text.count("<bot-token>") == 3 and "ValueError" in text


# =============================================================================================
# HTML rendering and splitting
# =============================================================================================
def test_answer_html_escapes_and_bolds_only_the_span():
    text = answer_html(make_answer(QUESTION), 0, 3)
    assert_telegram_html(text)
    assert re.findall(r"<b>(.*?)</b>", text) == ["13家"]


@pytest.mark.parametrize("span", [None, (0, 0), (5, 2), (0, 10_000)])
def test_answer_html_ignores_unusable_spans(span):
    answer = make_answer(QUESTION)
    answer = replace(answer, sentence=replace(answer.sentence, span=span))
    text = answer_html(answer)
    assert_telegram_html(text)
    assert "<b>" not in text


def test_split_long_article_never_inside_a_tag():
    article = make_article(1, "\n".join(
        "<b>假粗体</b> & " * 30 + "句子。" * 200 for _ in range(5)))
    html_text = article_html(article).replace("句子。", "<i>句子</i>。", 50)
    parts = split_html(html_text)
    assert len(parts) > 1
    for part in parts:
        assert_telegram_html(part)
    assert re.sub(r"\s", "", "".join(visible_text(p) for p in parts)) == re.sub(
        r"\s", "", visible_text(html_text))


def test_split_prefers_line_ends():
    lines = [f"第{i}行" + "字" * 50 for i in range(200)]
    parts = split_html("\n".join(lines))
    assert len(parts) >= 3
    assert all(part.split("\n")[-1] in lines for part in parts)  # every part ends a line


def test_split_counts_utf16_units():
    emoji = "😀" * 3000  # 2 UTF-16 units each
    parts = split_html(emoji)
    assert len(parts) == 2 and all(utf16_len(p) <= MAX_MESSAGE_CHARS for p in parts)


_fragments = st.recursive(
    st.text(alphabet=st.sampled_from(list("山西开发区 <>&\"'。，\nab😀")), max_size=40),
    lambda inner: st.tuples(st.sampled_from(["b", "i", "u", "code", "a"]),
                            st.lists(inner, max_size=4)),
    max_leaves=30,
)


def _render(fragment) -> str:
    import html as html_module

    if isinstance(fragment, str):
        return html_module.escape(fragment, quote=False)
    tag, children = fragment
    inner = "".join(_render(child) for child in children)
    opening = '<a href="https://example.org/?a=1&amp;b=2">' if tag == "a" else f"<{tag}>"
    return f"{opening}{inner}</{tag}>"


@settings(max_examples=300, deadline=None)
@given(fragments=st.lists(_fragments, min_size=1, max_size=8), limit=st.integers(60, 400))
def test_split_html_property(fragments, limit):
    text = "".join(_render(f) for f in fragments)
    # Only limits that leave room for the deepest nesting around one character can be met.
    stack: list = []
    for token in render_html._TOKEN.findall(text):
        stack = render_html._apply(stack, token)
        need = utf16_len(render_html._opening(stack) + token + render_html._closing(stack))
        assume(need + 8 <= limit)
    parts = split_html(text, limit)
    for part in parts:
        assert utf16_len(part) <= limit
        parser = TelegramHTML()
        parser.feed(part)
        parser.close()
        assert not parser.problems and not parser.stack, part
        assert visible_text(part).strip()
        assert not re.search(r"&(?!(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);)",
                             re.sub(r"<[^>]*>", "", part))
    assert re.sub(r"\s", "", "".join(visible_text(p) for p in parts)) == re.sub(
        r"\s", "", visible_text(text))


# =============================================================================================
# Conversations, browsing, relevant passages, quiet refusals and outages (issue 13)
# =============================================================================================
def test_a_private_chat_is_one_conversation_and_group_members_have_their_own(tb):
    tb.say(ALICE, ALICE, QUESTION)
    tb.say(ALICE, ALICE, "他要求做什么？")
    tb.say(WORK_GROUP, ALICE, f"/ask {QUESTION}")
    tb.say(WORK_GROUP, BOB, f"/ask {QUESTION}")
    tb.say(WORK_GROUP, ALICE, "/ask 他要求做什么？")
    private, private_again, group_alice, group_bob, group_alice_again = tb.service.conversations
    assert private is private_again
    assert group_alice is group_alice_again
    assert len({id(private), id(group_alice), id(group_bob)}) == 3


def test_new_starts_over_and_idle_conversations_expire(make_tb):
    tb = make_tb()
    tb.say(ALICE, ALICE, QUESTION)
    tb.say(ALICE, ALICE, "/new")
    assert "重新开始" in tb.api.texts()[-1]
    tb.say(ALICE, ALICE, QUESTION)
    tb.clock.now += tb.settings.conversation.idle_seconds + 1
    tb.say(ALICE, ALICE, QUESTION)
    first, after_new, after_idle = tb.service.conversations
    assert first is not after_new and after_new is not after_idle


def test_a_followup_reply_says_how_it_was_understood(tb):
    understood = "李俊胜要求全区上下做什么？"
    tb.service.answer = lambda question, **_: replace(make_answer(question),
                                                     understood_as=understood)
    tb.say(ALICE, ALICE, "他要求全区上下做什么？")
    text = tb.api.texts()[-1]
    assert_telegram_html(text)
    assert visible_text(text).startswith(f"理解为：{understood}\n💡 ")


def test_a_browse_request_lists_articles_with_full_text_buttons(tb):
    listed = tuple(ARTICLES.values())[:3]
    tb.service.answer = lambda question, **_: Answer(question, None, [], "", browse=listed)
    tb.say(ALICE, ALICE, "广灵开发区")
    message = tb.last_sent()
    text = tb.api.texts()[-1]
    assert_telegram_html(text)
    assert "“广灵开发区”的文章（共 3 篇，最新的在前）" in visible_text(text)
    assert "没有找到" not in visible_text(text)
    assert labels(message) == ["全文 1", "全文 2", "全文 3"]
    tb.api.clear()
    tb.press(message, "全文 2", ALICE)
    assert listed[1].title in visible_text(tb.api.texts()[-1])


def test_only_relevant_passages_are_shown_and_one_is_said_to_be_the_only_one(tb):
    def far_apart(question, **_):
        answer = make_answer(question)
        scores = [1.0, 0.2, 0.19, 0.18, 0.17]
        passages = zip(answer.passages, scores, strict=True)
        return replace(answer, passages=[replace(hit, score=score) for hit, score in passages])

    tb.service.answer = far_apart
    tb.say(ALICE, ALICE, QUESTION)
    text = visible_text(tb.api.texts()[-1])
    assert "相关段落（只有这一篇相关）：" in text and "[2]" not in text
    assert "更多结果" not in labels(tb.last_sent())


def test_refusals_to_an_outsider_are_sent_once_a_minute(tb):
    for _ in range(3):
        tb.say(MALLORY, MALLORY, QUESTION)
    assert len(tb.api.texts()) == 1
    tb.clock.now += 61
    tb.say(MALLORY, MALLORY, QUESTION)
    assert len(tb.api.texts()) == 2
    assert tb.service.questions == []


def test_a_telegram_outage_at_start_is_one_line_without_traceback(monkeypatch, capsys,
                                                                   tmp_path):
    import socket

    from qa_bot.cli import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("QA_BOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("QA_BOT_TELEGRAM_OPEN_TO_EVERYONE", "true")
    monkeypatch.setenv("QA_BOT_TELEGRAM_BASE_URL", f"http://127.0.0.1:{port}/bot")
    assert main(["--index-dir", str(tmp_path), "bot"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err + captured.out
    assert err.count("\n") == 0, err
    assert err.startswith("qa-bot: error: cannot reach the Telegram Bot API")
    assert TOKEN not in err
