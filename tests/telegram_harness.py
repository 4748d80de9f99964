"""End-to-end test harness: a real PTB ``Application`` against a local Telegram Bot API emulator.

The emulator is npm ``telegram-test-api`` 4.2.1 run through ``tests/telegram_emulator/launcher.js``,
which patches it at run time so python-telegram-bot 22 works with it (why each patch exists:
``/work/shared/notes/telegram-emulator.md``; what the launcher serves: its header comment).
Everything stays on 127.0.0.1; no pytest plugin (no pytest-asyncio) is needed.

Setup, once per checkout (Node >= 18)::

    npm ci --prefix tests/telegram_emulator

Run::

    .venv/bin/python -m pytest tests/e2e            # or: -m e2e / -m "not e2e"

Without ``node_modules`` every e2e test fails (never skips) and says to run ``npm ci``.

Fixtures (``tests/e2e/conftest.py``; every test under ``tests/e2e/`` is marked ``e2e``)
--------------------------------------------------------------------------------------
``emulator``     one ``Emulator`` for the session.
``bot_token``    a fresh token per test: updates, messages, recorded calls and faults are kept
                 per token, so tests sharing the emulator never see each other.
``tg``           an ``EmulatorClient`` for that token: plays the users, reads what the bot did.
``app_builder``  ``Application.builder()`` with that token, ``base_url`` and ``base_file_url``.
``run_bot``      ``run_bot(app, **BotRunner options) -> BotRunner``, started at once, stopped at
                 teardown; the test then fails if a handler raised, unless it took the errors
                 with ``runner.take_errors()``.

Example::

    from telegram.ext import MessageHandler, filters
    from telegram_harness import group_chat

    def test_echo(tg, app_builder, run_bot):
        async def echo(update, context):
            await update.message.reply_text(update.message.text)

        app = app_builder.build()
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
        run_bot(app)

        assert tg.ask(42, 42, "hello").text == "hello"      # user 42 in their private chat
        tg.send_command(42, 42, "start")                     # "/start" + bot_command entity
        reply = tg.next_bot_message(42)
        team = group_chat(-100, "Team")
        tg.mention(team, 7, "@QaTestBot hi")                 # adds the mention entity

Users and chats may be ids or Telegram dicts: user ``7`` is ``{"id": 7, "first_name": "User 7",
"username": "user7", "is_bot": False}``; chat ``42`` is the private chat with user 42, a
negative id a group (``group_chat(-100, "Title", supergroup=False)`` names it).

``EmulatorClient`` in short
---------------------------
* Acting: ``send_message(chat, user, text, entities=None, reply_to=None)``,
  ``send_command(chat, user, "start", args="", to_bot=False)``, ``mention(chat, user, text)``,
  ``send_callback(message, data, user)``, ``press(message, "Button text", user)``,
  ``ask(chat, user, text)`` (send, then the first bot message after it).
* Reading (current state, edits applied): ``history(chat_id)``, ``bot_messages(chat_id)``,
  ``message(chat_id, message_id)`` -> ``ChatMessage`` (``text`` as the user sees it,
  ``raw_text``/``parse_mode`` as sent, ``entities``/``entity_texts("bold")``/``links``,
  ``buttons``/``button_texts``/``button(text)``, ``reply_to_message_id``, ``edit_count``).
* Waiting: ``next_bot_message(chat_id)`` / ``next_bot_messages(chat_id, count=n)`` return
  bot messages this client has not returned before; ``wait_edit(message)``;
  ``wait_call(method, predicate)``; ``wait_for(condition)`` for anything else. Waits never
  sleep a fixed time: the emulator's ``/_wait`` returns as soon as anything of this token
  changes. Timeouts (default 5 s) raise ``TimeoutError`` listing the bot's recent calls.
* Bot API calls: ``calls(method=None)`` -> ``ApiCall`` (``method``, ``params``, ``status``:
  HTTP code, ``None`` while pending, ``"aborted"`` if the bot hung up). This is the only way
  to see ``answerCallbackQuery`` texts, ``sendChatAction``, ``setMyCommands``...
* Faults: ``inject_faults(500, count=5, methods=["getUpdates"], interrupt=True)`` (a 500
  storm starting now), ``inject_faults(None, methods=["sendMessage"], delay_ms=3000)`` (a
  hang), ``inject_faults(429, retry_after=2)``; ``clear_faults()``.

``BotRunner``
-------------
Runs the ``Application`` in a background thread with its own event loop, in
``run_polling()``'s order: initialize, ``post_init`` (by hand: only ``run_polling`` and
``run_webhook`` call it), ``updater.start_polling`` (``webhook=True``: ``start_webhook`` on a
free local port with a secret token), start; ``stop()``: updater.stop, stop, ``post_stop``,
shutdown, ``post_shutdown``. ``runner.run_coroutine(runner.bot.send_message(...))`` runs code
on the bot's loop. Handler exceptions land in ``handler_errors``, polling errors in
``polling_errors``. PTB backs off 1 s, 1.5 s, ... after a failed getUpdates when
``poll_interval`` is 0; pass e.g. ``poll_interval=0.01`` in fault-injection tests.

What the emulator does and does not do (details in the note)
-------------------------------------------------------------
* Strict by default: invalid HTML (``<br>``, unclosed or unknown tags, a bare ``<``), empty
  texts, texts over 4096 characters, replies to unknown messages, edits that change nothing,
  unknown or twice-answered callback queries get Telegram's 400 errors, so the bot sees the
  ``BadRequest`` it would see in production. HTML is parsed like Telegram does it (``text``
  is plain, entities computed); MarkdownV2 is passed through unchecked.
  ``Emulator(strict=False)`` accepts everything.
* getUpdates long-polls and honours offset/limit/allowed_updates; a second concurrent poller
  for the same token gets 409 Conflict, as on Telegram.
* Only ``message`` and ``callback_query`` updates; no files: ``sendPhoto``, ``getFile``, ...
  answer 400 "method 'X' is not supported by telegram-test-api" (PTB ``BadRequest``, and a
  line on the emulator's stderr, logged on the ``telegram_emulator`` logger).
* Entities of user messages are not computed: use ``send_command``/``mention``.
* Privacy mode is not emulated: the bot receives every group message.
* ``chat_id`` and other numbers in ``ApiCall.params`` are strings (PTB sends forms).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import itertools
import json
import logging
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from telegram.ext import Application, ApplicationBuilder

__all__ = [
    "DEFAULT_TIMEOUT",
    "EMULATOR_DIR",
    "INSTALL_HINT",
    "ApiCall",
    "BotRunner",
    "ChatMessage",
    "Emulator",
    "EmulatorClient",
    "EmulatorError",
    "EmulatorNotInstalled",
    "command_entities",
    "group_chat",
    "make_user",
    "measure_round_trips",
    "mention_entities",
    "private_chat",
    "utf16_len",
]

T = TypeVar("T")
log = logging.getLogger("telegram_emulator")

EMULATOR_DIR = Path(__file__).resolve().parent / "telegram_emulator"
PINNED_VERSION = "4.2.1"
INSTALL_HINT = "run `npm ci --prefix tests/telegram_emulator`"
DEFAULT_TIMEOUT = 5.0
DEFAULT_BOT_USERNAME = "QaTestBot"

JSONDict = dict[str, Any]
ChatLike = int | JSONDict
UserLike = int | JSONDict


class EmulatorError(RuntimeError):
    """The emulator could not be started or answered something unexpected."""


class EmulatorNotInstalled(EmulatorError):
    """Node.js or the emulator's node_modules are missing."""


# --------------------------------------------------------------------------------------------
# Telegram objects for the user side
# --------------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def make_user(
    user: UserLike,
    first_name: str | None = None,
    username: str | None = None,
    language_code: str | None = None,
) -> JSONDict:
    """A Telegram ``User`` dict; an int gives ``{"id": n, "first_name": "User n", ...}``."""
    if isinstance(user, dict):
        return {"is_bot": False, **user}
    out: JSONDict = {
        "id": int(user),
        "is_bot": False,
        "first_name": first_name or f"User {user}",
        "username": username or f"user{user}",
    }
    if language_code:
        out["language_code"] = language_code
    return out


def private_chat(user: UserLike) -> JSONDict:
    """The private chat with ``user`` (its id is the user's id)."""
    u = make_user(user)
    chat = {"id": u["id"], "type": "private", "first_name": u["first_name"]}
    if u.get("username"):
        chat["username"] = u["username"]
    return chat


def group_chat(chat_id: int, title: str | None = None, *, supergroup: bool = False) -> JSONDict:
    """A group chat; ``chat_id`` must be negative (a positive one is negated)."""
    cid = -abs(int(chat_id))
    return {
        "id": cid,
        "type": "supergroup" if supergroup else "group",
        "title": title or f"Group {cid}",
    }


def stop_process(process: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    """SIGTERM a `qa-bot bot` process (killed if it outlives `timeout`): exit code, stderr."""
    process.terminate()
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


def _chat(chat: ChatLike) -> JSONDict:
    if isinstance(chat, dict):
        return chat
    return private_chat(chat) if int(chat) > 0 else group_chat(int(chat))


def _chat_id(chat: ChatLike) -> int:
    return int(chat["id"]) if isinstance(chat, dict) else int(chat)


def mention_entities(text: str, username: str = DEFAULT_BOT_USERNAME) -> list[JSONDict]:
    """``mention`` entities for every ``@username`` in ``text`` (with or without the ``@``)."""
    handle = "@" + username.lstrip("@")
    out = []
    for m in re.finditer(re.escape(handle) + r"\b", text, flags=re.IGNORECASE):
        out.append(
            {"type": "mention", "offset": utf16_len(text[: m.start()]), "length": utf16_len(handle)}
        )
    return out


def command_entities(text: str) -> list[JSONDict]:
    """A ``bot_command`` entity for a leading ``/command[@bot]``, as Telegram computes it."""
    m = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?", text)
    if not m:
        raise ValueError(f"not a command: {text!r}")
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(m.group(0))}]


def _utf16_slice(text: str, offset: int, length: int) -> str:
    data = text.encode("utf-16-le")
    return data[offset * 2 : (offset + length) * 2].decode("utf-16-le")


# --------------------------------------------------------------------------------------------
# What the client reads back
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessage:
    """A message in a chat as the emulator holds it now (bot or user, edits applied)."""

    entry: JSONDict = field(repr=False)

    @property
    def message(self) -> JSONDict:
        """The Telegram ``Message`` dict (what the bot got back from sendMessage)."""
        return self.entry["message"]

    @property
    def message_id(self) -> int:
        return int(self.entry["message_id"])

    @property
    def chat_id(self) -> int:
        return int(self.entry["chat_id"])

    @property
    def chat(self) -> JSONDict:
        return self.message["chat"]

    @property
    def from_user(self) -> JSONDict:
        return self.message.get("from", {})

    @property
    def is_bot(self) -> bool:
        return self.entry["kind"] == "bot"

    @property
    def text(self) -> str:
        """The text as the user sees it (HTML parsed, tags removed)."""
        return self.message.get("text", "")

    @property
    def raw_text(self) -> str:
        """The text as the bot sent it (with HTML tags, if any)."""
        return self.entry.get("sent", {}).get("text") or self.text

    @property
    def parse_mode(self) -> str | None:
        return self.entry.get("sent", {}).get("parse_mode")

    @property
    def entities(self) -> list[JSONDict]:
        return self.message.get("entities", [])

    def entity_texts(self, entity_type: str) -> list[str]:
        """The pieces of ``text`` covered by entities of a type (``"bold"``, ``"text_link"``...)."""
        return [
            _utf16_slice(self.text, e["offset"], e["length"])
            for e in self.entities
            if e["type"] == entity_type
        ]

    @property
    def links(self) -> list[str]:
        """URLs of ``text_link`` entities (``<a href>``), in order."""
        return [e["url"] for e in self.entities if e["type"] == "text_link"]

    @property
    def reply_markup(self) -> JSONDict | None:
        """The markup as sent (reply keyboards included); inline keyboards reflect edits."""
        if "reply_markup" in self.message:
            return self.message["reply_markup"]
        sent = self.entry.get("sent", {}).get("reply_markup")
        return sent if sent and "inline_keyboard" not in sent else None

    @property
    def inline_keyboard(self) -> list[list[JSONDict]]:
        markup = self.message.get("reply_markup") or {}
        return markup.get("inline_keyboard", [])

    @property
    def buttons(self) -> list[JSONDict]:
        """Inline buttons, row by row, flattened."""
        return [b for row in self.inline_keyboard for b in row]

    @property
    def button_texts(self) -> list[str]:
        return [b["text"] for b in self.buttons]

    def button(self, text: str | re.Pattern[str]) -> JSONDict:
        """The inline button whose text equals ``text`` (or matches the compiled pattern)."""
        for b in self.buttons:
            if (b["text"] == text) if isinstance(text, str) else text.search(b["text"]):
                return b
        raise LookupError(f"no button {text!r} in message {self.message_id}: {self.button_texts}")

    @property
    def reply_to_message_id(self) -> int | None:
        reply = self.message.get("reply_to_message")
        return int(reply["message_id"]) if reply else None

    @property
    def edit_count(self) -> int:
        return int(self.entry.get("edit_count", 0))

    @property
    def deleted(self) -> bool:
        return bool(self.entry.get("deleted"))

    def __str__(self) -> str:
        who = "bot" if self.is_bot else f"user {self.from_user.get('id')}"
        return f"[{self.chat_id}#{self.message_id} {who}] {self.text!r}"


@dataclass(frozen=True)
class ApiCall:
    """One Bot API request made by the bot, as recorded by the emulator."""

    seq: int
    method: str
    params: JSONDict
    status: int | str | None  # HTTP status; None while pending; "aborted" if the client hung up
    error: str | None
    time_ms: int
    duration_ms: int | None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @classmethod
    def from_json(cls, d: JSONDict) -> ApiCall:
        return cls(
            seq=d["seq"],
            method=d["method"],
            params=d.get("params") or {},
            status=d.get("status"),
            error=d.get("error"),
            time_ms=d["time_ms"],
            duration_ms=d.get("duration_ms"),
        )

    def __str__(self) -> str:
        params = json.dumps(self.params, ensure_ascii=False)
        if len(params) > 160:
            params = params[:157] + "..."
        error = f" {self.error}" if self.error else ""
        return f"#{self.seq} {self.method} {params} -> {self.status}{error}"


# --------------------------------------------------------------------------------------------
# The emulator process
# --------------------------------------------------------------------------------------------


class Emulator:
    """``node launcher.js`` as a subprocess on an ephemeral port.

    Use as a context manager or call ``start()``/``stop()``. ``stderr`` (unsupported methods,
    webhook failures...) is kept in ``stderr_lines`` and logged on the ``telegram_emulator``
    logger, so pytest shows it with a failing test.
    """

    _token_counter = itertools.count(random.randint(100_000_000, 800_000_000))

    def __init__(
        self,
        *,
        bot_username: str = DEFAULT_BOT_USERNAME,
        bot_first_name: str = "QA Test Bot",
        strict: bool = True,
        log_calls: bool = False,
        emulator_dir: Path = EMULATOR_DIR,
        node: str | None = None,
        extra_env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict = strict
        self.log_calls = log_calls
        self.emulator_dir = Path(emulator_dir)
        self.node = node
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=5000)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._threads: list[threading.Thread] = []

    # -- installation --------------------------------------------------------------------

    @staticmethod
    def check_installed(emulator_dir: Path = EMULATOR_DIR, node: str | None = None) -> str:
        """Return the node executable; raise ``EmulatorNotInstalled`` with the fix otherwise."""
        node_path = node or shutil.which("node")
        if not node_path:
            raise EmulatorNotInstalled(
                "Node.js (>= 18) is not on PATH; the Telegram emulator needs it. "
                f"Install Node.js, then {INSTALL_HINT}."
            )
        pkg = Path(emulator_dir) / "node_modules" / "telegram-test-api" / "package.json"
        if not pkg.is_file():
            raise EmulatorNotInstalled(
                f"The Telegram emulator is not installed ({pkg} is missing): {INSTALL_HINT}."
            )
        version = json.loads(pkg.read_text(encoding="utf-8")).get("version")
        if version != PINNED_VERSION:
            raise EmulatorNotInstalled(
                f"telegram-test-api {version} is installed, launcher.js patches {PINNED_VERSION}: "
                f"{INSTALL_HINT}."
            )
        return node_path

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._proc is not None:
            raise EmulatorError("emulator already started")
        node = self.check_installed(self.emulator_dir, self.node)
        env = {
            **os.environ,
            "PORT": "0",
            "HOST": "127.0.0.1",
            "BOT_USERNAME": self.bot_username,
            "BOT_FIRST_NAME": self.bot_first_name,
            "EMULATOR_STRICT": "1" if self.strict else "0",
            "EMULATOR_LOG": "1" if self.log_calls else "0",
            **self.extra_env,
        }
        self._proc = subprocess.Popen(
            [node, "launcher.js", "--exit-with-parent"],
            cwd=self.emulator_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        port_line: Future[str] = Future()
        self._threads = [
            threading.Thread(
                target=self._read_stdout, args=(port_line,), daemon=True, name="emulator-stdout"
            ),
            threading.Thread(target=self._read_stderr, daemon=True, name="emulator-stderr"),
        ]
        for t in self._threads:
            t.start()
        try:
            line = port_line.result(timeout=self.startup_timeout)
            self._port = int(json.loads(line)["port"])
        except Exception as exc:
            self.stop()
            raise EmulatorError(
                f"the emulator did not report its port within {self.startup_timeout:.0f} s "
                f"({exc!r}); stderr:\n{self.stderr_text()}"
            ) from exc
        return self

    def _read_stdout(self, port_line: Future[str]) -> None:
        assert self._proc and self._proc.stdout
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not port_line.done() and line.startswith("{"):
                port_line.set_result(line)
            elif line:
                log.info("emulator stdout: %s", line)
        if not port_line.done():
            port_line.set_exception(EmulatorError(f"emulator exited with code {self._proc.wait()}"))

    def _read_stderr(self) -> None:
        assert self._proc and self._proc.stderr
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr_lines.append(line)
            log.warning("%s", line)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for t in self._threads:
            t.join(timeout)
        return proc.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmulatorError("emulator not started")
        return self._port

    @property
    def url(self) -> str:
        """Root URL of the emulator (user-side routes live here)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url()``: PTB appends ``<token>/<method>``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url()`` (the emulator serves no files)."""
        return f"{self.url}/file/bot"

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines)

    # -- helpers --------------------------------------------------------------------------

    def new_token(self) -> str:
        """A fresh, unique bot token (``<digits>:<random>``): one per test keeps tests apart."""
        return f"{next(self._token_counter)}:TEST{secrets.token_urlsafe(18)}"

    def client(self, token: str, **kwargs: Any) -> EmulatorClient:
        return EmulatorClient(self, token, **kwargs)

    def application_builder(self, token: str) -> ApplicationBuilder:
        """``Application.builder()`` with token, base_url and base_file_url pointing here."""
        from telegram.ext import Application

        return (
            Application.builder()
            .token(token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )


# --------------------------------------------------------------------------------------------
# The user side
# --------------------------------------------------------------------------------------------


class EmulatorClient:
    """Plays the users of one bot (one token) and reads what the bot did.

    All waits take ``timeout`` in seconds (default ``default_timeout``) and raise
    ``TimeoutError`` with the bot's recent Bot API calls, for a readable failure.
    """

    def __init__(
        self,
        emulator: Emulator | str,
        token: str,
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        bot_username: str | None = None,
    ) -> None:
        if isinstance(emulator, Emulator):
            self.url = emulator.url
            self.bot_username = bot_username or emulator.bot_username
        else:
            self.url = emulator.rstrip("/")
            self.bot_username = bot_username or DEFAULT_BOT_USERNAME
        self.token = token
        self.default_timeout = default_timeout
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0), trust_env=False)
        self._seen: dict[int, set[int]] = collections.defaultdict(set)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw access -----------------------------------------------------------------------

    def post(
        self, route: str, body: Any, *, timeout: float | None = None, check: bool = True
    ) -> JSONDict:
        """POST JSON to an emulator route; with ``check``, a non-200 answer raises."""
        resp = self._http.post(route, json=body, timeout=timeout if timeout is not None else 30.0)
        data = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if check and resp.status_code != 200:
            raise EmulatorError(f"{route} -> HTTP {resp.status_code}: {data or resp.text}")
        return {"status_code": resp.status_code, **data} if not check else data

    # -- the user acts --------------------------------------------------------------------

    def send_message(
        self,
        chat: ChatLike,
        user: UserLike | None,
        text: str,
        entities: Sequence[JSONDict] | None = None,
        reply_to: ChatMessage | int | None = None,
        **extra: Any,
    ) -> JSONDict:
        """Send ``text`` from ``user`` in ``chat``; returns the ``message`` the bot will get.

        ``user`` may be None in a private chat (the chat's user). ``reply_to`` makes it a
        reply to that message (a ``ChatMessage`` or a message id in the same chat).
        """
        chat_d = _chat(chat)
        user_d = make_user(user if user is not None else chat_d["id"])
        body: JSONDict = {
            "botToken": self.token,
            "chat": chat_d,
            "from": user_d,
            "text": text,
            **extra,
        }
        if entities:
            body["entities"] = list(entities)
        if reply_to is not None:
            body["reply_to_message_id"] = (
                reply_to.message_id if isinstance(reply_to, ChatMessage) else int(reply_to)
            )
        return self.post("/sendMessage", body)["result"]["message"]

    def send_command(
        self,
        chat: ChatLike,
        user: UserLike | None,
        command: str,
        args: str = "",
        *,
        to_bot: bool | str = False,
        **extra: Any,
    ) -> JSONDict:
        """Send ``/command[@bot] args`` with its ``bot_command`` entity.

        ``to_bot=True`` appends ``@<bot username>`` (as Telegram clients do in groups);
        a string appends that username instead.
        """
        text = "/" + command.lstrip("/")
        if to_bot:
            text += "@" + (to_bot if isinstance(to_bot, str) else self.bot_username).lstrip("@")
        if args:
            text += " " + args
        chat_d = _chat(chat)
        user_d = make_user(user if user is not None else chat_d["id"])
        body = {
            "botToken": self.token,
            "chat": chat_d,
            "from": user_d,
            "text": text,
            "entities": command_entities(text),
            **extra,
        }
        return self.post("/sendCommand", body)["result"]["message"]

    def mention(self, chat: ChatLike, user: UserLike | None, text: str, **kwargs: Any) -> JSONDict:
        """Send ``text`` with ``mention`` entities for every ``@<bot username>`` in it."""
        return self.send_message(
            chat, user, text, entities=mention_entities(text, self.bot_username), **kwargs
        )

    def send_callback(
        self, message: ChatMessage | JSONDict, data: str, user: UserLike | None = None
    ) -> JSONDict:
        """Press an inline button with ``callback_data == data`` on ``message``.

        Returns the ``callback_query`` the bot will get (its ``id`` is what
        ``answerCallbackQuery`` must use). ``user`` defaults to the private chat's user.
        """
        msg = message.message if isinstance(message, ChatMessage) else message
        chat_id = int(msg["chat"]["id"])
        if user is None:
            if chat_id < 0:
                raise ValueError("send_callback in a group needs the user")
            user = chat_id
        body = {"botToken": self.token, "from": make_user(user), "message": msg, "data": data}
        return self.post("/sendCallback", body)["result"]["callback_query"]

    def press(
        self, message: ChatMessage, button: str | re.Pattern[str], user: UserLike | None = None
    ) -> JSONDict:
        """Press the inline button labelled ``button`` (see ``ChatMessage.button``)."""
        b = message.button(button)
        if "callback_data" not in b:
            raise ValueError(f"button {b} has no callback_data")
        return self.send_callback(message, b["callback_data"], user)

    def ask(
        self, chat: ChatLike, user: UserLike | None, text: str, timeout: float | None = None
    ) -> ChatMessage:
        """``send_message``, then wait for the first bot message in that chat sent after it."""
        sent = self.send_message(chat, user, text)
        return self.next_bot_message(_chat_id(chat), timeout, after=sent["message_id"])

    # -- reading state --------------------------------------------------------------------

    def history(
        self, chat_id: int | None = None, *, include_deleted: bool = False
    ) -> list[ChatMessage]:
        """All messages (user and bot), current state, oldest first."""
        return self._history(chat_id, include_deleted)[0]

    def _history(
        self, chat_id: int | None, include_deleted: bool = False
    ) -> tuple[list[ChatMessage], int]:
        body = {"token": self.token, "chat_id": chat_id, "include_deleted": include_deleted}
        data = self.post("/_history", body)
        msgs = sorted((ChatMessage(e) for e in data["result"]), key=lambda m: m.message_id)
        return msgs, int(data["version"])

    def bot_messages(self, chat_id: int | None = None) -> list[ChatMessage]:
        return [m for m in self.history(chat_id) if m.is_bot]

    def message(self, chat_id: int, message_id: int) -> ChatMessage:
        for m in self.history(chat_id, include_deleted=True):
            if m.message_id == message_id:
                return m
        raise LookupError(f"no message {message_id} in chat {chat_id}")

    def new_bot_messages(self, chat_id: int) -> list[ChatMessage]:
        """Bot messages in the chat not yet returned by ``next_bot_message(s)``; no waiting."""
        return self._new_bot_messages(chat_id)[0]

    def _new_bot_messages(self, chat_id: int) -> tuple[list[ChatMessage], int]:
        msgs, version = self._history(chat_id)
        seen = self._seen[int(chat_id)]
        return [m for m in msgs if m.is_bot and m.message_id not in seen], version

    def next_bot_messages(
        self, chat_id: int, timeout: float | None = None, count: int = 1
    ) -> list[ChatMessage]:
        """Wait until at least ``count`` new bot messages are in the chat; return all new ones."""

        def snapshot() -> tuple[list[ChatMessage] | None, int]:
            new, version = self._new_bot_messages(chat_id)
            return (new if len(new) >= count else None), version

        new = self._wait(snapshot, timeout, f"{count} new bot message(s) in chat {chat_id}")
        self._seen[int(chat_id)].update(m.message_id for m in new)
        return new

    def next_bot_message(
        self, chat_id: int, timeout: float | None = None, *, after: int | None = None
    ) -> ChatMessage:
        """Wait for the next new bot message in the chat (the oldest unseen one).

        ``after``: only consider bot messages sent after that message id (e.g. the user's
        message this is an answer to); older unseen ones stay unseen.
        """

        def snapshot() -> tuple[ChatMessage | None, int]:
            new, version = self._new_bot_messages(chat_id)
            if after is not None:
                new = [m for m in new if m.message_id > after]
            return (new[0] if new else None), version

        first = self._wait(snapshot, timeout, f"a new bot message in chat {chat_id}")
        self._seen[int(chat_id)].add(first.message_id)
        return first

    def mark_seen(self, chat_id: int) -> None:
        """Treat every bot message now in the chat as seen."""
        self._seen[int(chat_id)].update(m.message_id for m in self.bot_messages(chat_id))

    def wait_edit(self, message: ChatMessage, timeout: float | None = None) -> ChatMessage:
        """Wait until ``message`` has been edited (again) or deleted; return its new state."""

        def snapshot() -> tuple[ChatMessage | None, int]:
            msgs, version = self._history(message.chat_id, include_deleted=True)
            for now in msgs:
                if now.message_id == message.message_id:
                    changed = now.edit_count > message.edit_count or now.deleted
                    return (now if changed else None), version
            return None, version

        return self._wait(snapshot, timeout, f"an edit of message {message.message_id}")

    # -- recorded Bot API calls ------------------------------------------------------------

    def calls(self, method: str | None = None, *, since: int | None = None) -> list[ApiCall]:
        """Bot API calls made with this token, oldest first (``method`` is case-insensitive)."""
        return self._calls(method, since)[0]

    def _calls(self, method: str | None, since: int | None) -> tuple[list[ApiCall], int]:
        data = self.post("/_calls", {"token": self.token, "method": method, "since": since})
        return [ApiCall.from_json(c) for c in data["result"]], int(data["version"])

    def last_call_seq(self) -> int:
        """The seq of the latest recorded call (0 if none); pass it to ``calls(since=...)``."""
        calls = self.calls()
        return calls[-1].seq if calls else 0

    def wait_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float | None = None,
        *,
        since: int | None = None,
    ) -> ApiCall:
        """Wait until the bot has completed a ``method`` call (matching ``predicate``)."""

        def snapshot() -> tuple[ApiCall | None, int]:
            calls, version = self._calls(method, since)
            for c in calls:
                if c.status is not None and (predicate is None or predicate(c)):
                    return c, version
            return None, version

        return self._wait(snapshot, timeout, f"a {method} call")

    # -- fault injection ------------------------------------------------------------------

    def inject_faults(
        self,
        status: int | None = 500,
        count: int = 1,
        methods: Sequence[str] | None = None,
        *,
        delay_ms: int | None = None,
        description: str | None = None,
        retry_after: int | None = None,
        interrupt: bool = False,
        all_tokens: bool = False,
    ) -> JSONDict:
        """Answer the next ``count`` Bot API calls of ``methods`` (all if None) with ``status``.

        ``delay_ms`` holds each call that long first (``status=None`` + ``delay_ms``: a hang
        that then succeeds). ``retry_after`` adds ``parameters.retry_after`` (use with 429:
        PTB raises ``RetryAfter``). ``interrupt`` also fails getUpdates long polls already
        waiting, so a storm on getUpdates starts at once.
        """
        body: JSONDict = {
            "token": None if all_tokens else self.token,
            "status": status,
            "count": count,
            "methods": list(methods) if methods else None,
            "delay_ms": delay_ms,
            "description": description,
            "retry_after": retry_after,
            "interrupt": interrupt,
        }
        return self.post("/_faults", {k: v for k, v in body.items() if v is not None})["result"]

    def clear_faults(self) -> None:
        self.post("/_faults", {"clear": True, "token": self.token})

    # -- waiting --------------------------------------------------------------------------

    def _version(self) -> int:
        return int(
            self.post("/_wait", {"token": self.token, "version": 0, "timeout_ms": 0})["version"]
        )

    def _wait_change(self, version: int, timeout: float) -> int:
        body = {"token": self.token, "version": version, "timeout_ms": int(timeout * 1000)}
        return int(self.post("/_wait", body, timeout=timeout + 10)["version"])

    def wait_for(
        self,
        condition: Callable[[], T | None],
        timeout: float | None = None,
        what: str = "condition",
    ) -> T:
        """Re-evaluate ``condition`` whenever the bot's state changes until it is truthy.

        No polling interval: the emulator answers ``/_wait`` as soon as anything of this token
        changes (a call, a message, an edit). Returns the truthy value.
        """

        def snapshot() -> tuple[T | None, int]:
            version = self._version()  # read before evaluating, so no change is missed
            return condition(), version

        return self._wait(snapshot, timeout, what)

    def _wait(
        self,
        snapshot: Callable[[], tuple[T | None, int]],
        timeout: float | None,
        what: str,
    ) -> T:
        timeout = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            result, version = snapshot()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout:.1f} s waiting for {what}.\n{self.describe()}"
                )
            self._wait_change(version, min(remaining, 30.0))

    def describe(self, last: int = 15) -> str:
        """Recent calls and messages, for failure messages."""
        try:
            calls = self.calls()[-last:]
            msgs = self.history()[-last:]
        except Exception as exc:
            return f"(emulator unreachable: {exc!r})"
        lines = (
            ["recent Bot API calls:", *(f"  {c}" for c in calls)] if calls else ["no Bot API calls"]
        )
        lines += ["recent messages:", *(f"  {m}" for m in msgs)] if msgs else ["no messages"]
        return "\n".join(lines)


def measure_round_trips(
    client: EmulatorClient, chat: ChatLike, n: int = 50, text: str = "ping"
) -> list[float]:
    """Seconds for ``n`` user->bot->user exchanges (needs a bot that answers every text)."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        client.ask(chat, None, f"{text} {i}")
        out.append(time.perf_counter() - t0)
    log.info("round trip median %.1f ms over %d", statistics.median(out) * 1000, n)
    return out


# --------------------------------------------------------------------------------------------
# The bot side
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotRunner:
    """Run a PTB ``Application`` in a background thread with its own event loop.

    ``start()`` returns once polling (or the webhook) is up; ``stop()`` shuts down like
    ``run_polling()`` does. ``poll_interval`` also sets PTB's back-off after a failed
    getUpdates (1 s at the default 0, then x1.5): pass e.g. 0.01 in fault-injection tests.
    """

    def __init__(
        self,
        application: Application,
        *,
        poll_interval: float = 0.0,
        polling_timeout: float = 10.0,
        allowed_updates: Sequence[str] | None = None,
        drop_pending_updates: bool = False,
        webhook: bool = False,
        webhook_secret: str | None = None,
        call_post_init: bool = True,
        start_timeout: float = 15.0,
    ) -> None:
        self.app = application
        self.poll_interval = poll_interval
        self.polling_timeout = polling_timeout
        self.allowed_updates = allowed_updates
        self.drop_pending_updates = drop_pending_updates
        self.webhook = webhook
        self.webhook_secret = webhook_secret or (secrets.token_urlsafe(24) if webhook else None)
        self.webhook_url: str | None = None
        self.call_post_init = call_post_init
        self.start_timeout = start_timeout
        self.handler_errors: list[tuple[object, BaseException]] = []
        self.polling_errors: list[BaseException] = []
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._started = False

    @property
    def bot(self) -> Any:
        return self.app.bot

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> BotRunner:
        if self._thread is not None:
            raise RuntimeError("BotRunner already started")
        self._thread = threading.Thread(
            target=self._thread_main, daemon=True, name="ptb-bot-runner"
        )
        self._thread.start()
        try:
            self.run_coroutine(self._astart(), timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _astart(self) -> None:
        app = self.app
        app.add_error_handler(self._record_error)
        await app.initialize()
        if self.call_post_init and app.post_init:
            await app.post_init(app)
        assert app.updater is not None, "the Application needs an Updater"
        if self.webhook:
            for attempt in range(3):  # the free port could be taken before tornado binds it
                port = _free_port()
                self.webhook_url = f"http://127.0.0.1:{port}/telegram"
                try:
                    await app.updater.start_webhook(
                        listen="127.0.0.1",
                        port=port,
                        url_path="telegram",
                        webhook_url=self.webhook_url,
                        secret_token=self.webhook_secret,
                        allowed_updates=self.allowed_updates,
                        drop_pending_updates=self.drop_pending_updates,
                    )
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE or attempt == 2:
                        raise
        else:
            await app.updater.start_polling(
                poll_interval=self.poll_interval,
                timeout=int(self.polling_timeout),
                allowed_updates=self.allowed_updates,
                drop_pending_updates=self.drop_pending_updates,
                error_callback=self._record_polling_error,
            )
        await app.start()

    async def _astop(self) -> None:
        app = self.app
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
            if app.post_stop:
                await app.post_stop(app)
        if app._initialized:  # no public flag in PTB 22
            await app.shutdown()
            if app.post_shutdown:
                await app.post_shutdown(app)
        app.remove_error_handler(self._record_error)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the Application (idempotent) and the loop thread."""
        if self._thread is None:
            return
        try:
            if self.loop.is_running():
                self.run_coroutine(self._astop(), timeout=timeout)
        finally:
            if self.loop.is_running():
                self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> BotRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running code on the bot's loop ---------------------------------------------------

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the bot's loop and return its result (exceptions propagate)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    # -- errors ---------------------------------------------------------------------------

    async def _record_error(self, update: object, context: Any) -> None:
        error = context.error
        self.handler_errors.append((update, error))
        log.error("exception in a handler for %r", update, exc_info=error)

    def _record_polling_error(self, error: BaseException) -> None:
        self.polling_errors.append(error)
        log.warning("polling error: %r", error)

    def take_errors(self) -> list[BaseException]:
        """Return and forget the handler errors (for tests that expect some)."""
        errors = [e for _, e in self.handler_errors]
        self.handler_errors.clear()
        return errors

    def raise_if_errors(self) -> None:
        if self.handler_errors:
            details = "\n".join(
                f"  {type(e).__name__}: {e} (update {u!r})" for u, e in self.handler_errors
            )
            raise AssertionError(
                f"{len(self.handler_errors)} exception(s) in bot handlers:\n{details}"
            )
