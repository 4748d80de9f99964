"""Who may use the bot, how often, and keeping the token out of the logs."""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable

from qa_bot.config import ConfigError, TelegramSettings

PRIVATE = "private"


class AccessPolicy:
    """The allow-list.

    A private chat is allowed when the user is listed (in `allowed_users`, or in
    `allowed_chats`, since a private chat's id is the user's id). A group is allowed when its
    chat id is listed: answers in a group are seen by all its members, so a listed user alone
    does not open an unlisted group.
    """

    def __init__(
        self,
        users: Iterable[int] = (),
        chats: Iterable[int] = (),
        admins: Iterable[int] = (),
        open_to_everyone: bool = False,
    ) -> None:
        self.users = frozenset(users)
        self.chats = frozenset(chats)
        self.admins = frozenset(admins)
        self.open_to_everyone = open_to_everyone

    @classmethod
    def from_settings(cls, settings: TelegramSettings) -> AccessPolicy:
        return cls(
            settings.allowed_users, settings.allowed_chats, settings.admin_users,
            settings.open_to_everyone,
        )

    def check_startable(self) -> None:
        if not (self.users or self.chats or self.open_to_everyone):
            raise ConfigError(
                "the Telegram allow-list is empty, so nobody could use the bot. Set "
                "QA_BOT_TELEGRAM_ALLOWED_USERS and/or QA_BOT_TELEGRAM_ALLOWED_CHATS "
                "(comma-separated ids; [telegram] allowed_users / allowed_chats in the config), "
                "or set [telegram] open_to_everyone = true to answer anyone"
            )

    def allows(self, user_id: int | None, chat_id: int | None, chat_type: str | None) -> bool:
        if self.open_to_everyone:
            return True
        if chat_type == PRIVATE or chat_id is None:
            return user_id is not None and (user_id in self.users or user_id in self.chats)
        return chat_id in self.chats

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admins


class RateLimiter:
    """At most `per_minute` questions per user in any 60-second window."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._warned: dict[int, float] = {}

    def check(self, user_id: int) -> float:
        """Record a question; 0.0 if it may go ahead, else the seconds until it could."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        hits = self._hits.setdefault(user_id, deque())
        while hits and now - hits[0] >= self.WINDOW:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(self.WINDOW - (now - hits[0]), 0.1)
        hits.append(now)
        self._forget_idle(now)
        return 0.0

    def should_warn(self, user_id: int, wait: float) -> bool:
        """One polite notice per blocked stretch: a flood of questions gets one reply, not many."""
        now = self.clock()
        if self._warned.get(user_id, -1.0) > now:
            return False
        self._warned[user_id] = now + wait
        return True

    def _forget_idle(self, now: float) -> None:
        # Keeps memory bounded by the users active in the last minute.
        if len(self._hits) > 1000:
            for user, hits in list(self._hits.items()):
                if not hits or now - hits[-1] >= self.WINDOW:
                    del self._hits[user]
                    self._warned.pop(user, None)


class TokenRedactor(logging.Filter):
    """Replaces the bot token in every record (message, arguments, traceback) with a marker.

    httpx logs request URLs, and PTB's network errors can quote them; a URL of the Bot API
    contains the token. Installed on the root logger's handlers, so records of every logger
    pass through it.
    """

    MARK = "<bot-token>"

    def __init__(self, token: str, extra_secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # The whole token first, then its secret half (it may appear URL-encoded after `%3A`).
        candidates = [token, token.split(":", 1)[-1], *extra_secrets]
        self.secrets = [s for s in dict.fromkeys(candidates) if len(s) >= 8]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, self.MARK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep it, but never with unformatted args
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_redactor(
    token: str, extra_secrets: Iterable[str] = (), logger: logging.Logger | None = None
) -> TokenRedactor:
    """Put a TokenRedactor on every handler of `logger` (the root logger by default)."""
    logger = logger or logging.getLogger()
    if not logger.handlers:
        logging.basicConfig()
    redactor = TokenRedactor(token, extra_secrets)
    for handler in logger.handlers:
        handler.addFilter(redactor)
    return redactor


def redact_uncaught(redactor: TokenRedactor) -> None:
    """Python prints an uncaught exception itself, not through logging: redact that too.

    PTB's InvalidToken, for one, quotes the token it was given.
    """

    def excepthook(kind, value, trace) -> None:
        text = "".join(traceback.format_exception(kind, value, trace))
        sys.stderr.write(redactor.redact(text))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                  args.exc_traceback))
        name = args.thread.name if args.thread else "?"
        sys.stderr.write(redactor.redact(f"Exception in thread {name}:\n{text}"))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
