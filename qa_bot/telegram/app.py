"""The Telegram bot: handlers over `QAService`, the PTB `Application`, and `run_bot()`.

A thin shell: every answer is `QAService.answer()` (what `qa-bot ask` prints), computed in a
worker thread so the event loop keeps serving other chats while the model encodes. What this
module adds is the Telegram side: access checks on every entry point, rate limiting, HTML
replies with buttons, feedback, hot reload and an error handler that always answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from qa_bot.config import ConfigError, Settings, TelegramSettings
from qa_bot.conversation import ConversationStore
from qa_bot.records import Answer
from qa_bot.render import relevant_passages
from qa_bot.service import QuestionError, UnknownZone
from qa_bot.telegram.access import AccessPolicy, RateLimiter, install_redactor, redact_uncaught
from qa_bot.telegram.feedback import DOWN, UP, FeedbackStore
from qa_bot.telegram.render_html import (
    MAX_MESSAGE_CHARS,
    answer_html,
    article_html,
    esc,
    page_bounds,
    split_html,
    utf16_len,
)
from qa_bot.telegram.state import Entry, EntryCache
from qa_bot.telegram.texts import (
    ALREADY_VOTED,
    APOLOGY,
    ARTICLE_GONE,
    ASK_USAGE,
    COMMANDS,
    EMPTY_INDEX,
    EMPTY_QUESTION,
    EXAMPLES,
    EXPIRED,
    HELP_TEXT,
    NEW_CONVERSATION,
    NOT_ADMIN,
    RATE_LIMITED,
    REFUSED_BUTTON,
    REFUSED_GROUP,
    REFUSED_PRIVATE,
    START_TEXT,
    THANKS,
    UNKNOWN_COMMAND,
    UNKNOWN_ZONE,
    ZONE_USAGE,
)

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]
TOKEN_ENV = "QA_BOT_TELEGRAM_TOKEN"
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

class TelegramUnreachable(Exception):
    """The Bot API could not be reached at start: the network, not the bot, needs fixing."""


def check_settings(telegram: TelegramSettings) -> None:
    """Everything that must hold before the bot connects; a ConfigError names the fix."""
    if not telegram.token.strip():
        raise ConfigError(
            f"no Telegram bot token: set the environment variable {TOKEN_ENV} to the token "
            "BotFather gave you (never put it in a file under git)"
        )
    AccessPolicy.from_settings(telegram).check_startable()
    if telegram.mode not in ("polling", "webhook"):
        raise ConfigError(
            f"[telegram] mode must be \"polling\" or \"webhook\", not {telegram.mode!r}"
        )
    if telegram.mode == "webhook" and not telegram.webhook_url:
        raise ConfigError(
            "[telegram] mode is \"webhook\" but webhook_url is empty: set it to the public "
            "HTTPS URL that Telegram should POST updates to (QA_BOT_TELEGRAM_WEBHOOK_URL)"
        )
    if telegram.passages_per_page < 1:
        raise ConfigError("[telegram] passages_per_page must be at least 1")


class QABot:
    """The handlers. `service` is a QAService (or anything with the same methods)."""

    def __init__(self, settings: Settings, service: Any,
                 clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.tg = settings.telegram
        self.service = service
        self.access = AccessPolicy.from_settings(self.tg)
        self.limiter = RateLimiter(self.tg.rate_limit_per_minute,
                                   **({"clock": clock} if clock else {}))
        self.entries = EntryCache(self.tg.answer_cache_size)
        # Follow-ups: one conversation per private chat and per user within a group.
        self.conversations = ConversationStore(
            settings.conversation.idle_seconds, settings.conversation.max_conversations,
            **({"clock": clock} if clock else {}))
        # Refusals to outsiders: one per user in this many seconds, so a stranger's flood of
        # messages gets one reply, not one each.
        self.refusals = RateLimiter(1, **({"clock": clock} if clock else {}))
        self.feedback = FeedbackStore(self.tg.feedback_path)
        self.per_page = self.tg.passages_per_page
        self.k = self.tg.max_passages or None  # None: retrieval.top_k, as `qa-bot ask`
        # Answers run here: encoding is CPU-bound and must not block the event loop.
        self.executor = ThreadPoolExecutor(max(self.tg.answer_workers, 1), "qa-answer")
        self._watcher: asyncio.Task | None = None

    # -- wiring ------------------------------------------------------------------------------
    def register(self, app: Application) -> None:
        app.add_handler(CommandHandler("start", self.cmd_start))
        app.add_handler(CommandHandler("help", self.cmd_help))
        app.add_handler(CommandHandler("ask", self.cmd_ask))
        app.add_handler(CommandHandler("zone", self.cmd_zone))
        app.add_handler(CommandHandler("zones", self.cmd_zones))
        app.add_handler(CommandHandler("latest", self.cmd_latest))
        app.add_handler(CommandHandler("reload", self.cmd_reload))
        app.add_handler(CommandHandler("new", self.cmd_new))
        app.add_handler(MessageHandler(
            filters.ChatType.PRIVATE & filters.COMMAND, self.on_unknown_command))
        app.add_handler(MessageHandler(
            filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, self.on_private_text))
        app.add_handler(MessageHandler(
            filters.ChatType.GROUPS & filters.TEXT & ~filters.COMMAND, self.on_group_text))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_error_handler(self.on_error)

    async def post_init(self, app: Application) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.service.warm_up)  # model + index, once
        try:
            await app.bot.set_my_commands(COMMANDS)
        except TelegramError as exc:  # a cosmetic failure: the commands still work
            log.warning("could not register the command list: %s", exc)
        if self.tg.reload_check_seconds > 0:
            self._watcher = asyncio.create_task(self._watch_index(), name="qa-bot-index-watch")
        log.info("bot @%s is ready (index %s)", app.bot.username, self._snapshot_name())

    async def post_stop(self, app: Application) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def post_shutdown(self, app: Application) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- helpers -----------------------------------------------------------------------------
    async def _in_thread(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args,
                                                                             **kwargs))

    def _allowed(self, update: Update) -> bool:
        user, chat = update.effective_user, update.effective_chat
        return self.access.allows(user and user.id, chat and chat.id, chat and chat.type)

    async def _guard(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """True when the sender may use the bot; otherwise answer with a refusal only."""
        if self._allowed(update):
            return True
        user, chat = update.effective_user, update.effective_chat
        log.info("refused user %s in chat %s", user and user.id, chat and chat.id)
        if chat is not None and not self.refusals.check(chat.id):
            text = (REFUSED_PRIVATE.format(user_id=user.id if user else "?")
                    if chat.type == ChatType.PRIVATE else REFUSED_GROUP.format(chat_id=chat.id))
            await self._send(context, chat.id, text, reply_to=self._quote(update))
        return False

    @staticmethod
    def _quote(update: Update) -> int | None:
        """In groups the reply quotes the question, so it is clear whom it answers."""
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None or chat.type == ChatType.PRIVATE:
            return None
        return message.message_id

    async def _send(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
    ) -> list[Message]:
        """Send HTML, split below Telegram's limit; buttons go under the last part."""
        parts = split_html(text, MAX_MESSAGE_CHARS)
        sent = []
        for number, part in enumerate(parts):
            last = number == len(parts) - 1
            sent.append(await context.bot.send_message(
                chat_id,
                part,
                parse_mode=ParseMode.HTML,
                reply_markup=markup if last else None,
                link_preview_options=_NO_PREVIEW,
                reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
                if reply_to and number == 0 else None,
            ))
        return sent

    async def _typing(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> None:
        with contextlib.suppress(TelegramError):  # cosmetic: never lose an answer over it
            await context.bot.send_chat_action(chat_id, ChatAction.TYPING)

    def _snapshot_name(self) -> str:
        with contextlib.suppress(Exception):
            return str(self.service.snapshot.name)
        return "?"

    # -- questions ---------------------------------------------------------------------------
    @staticmethod
    def conversation_key(update: Update) -> tuple[int, int]:
        """A private chat is one conversation; in a group, each user has their own."""
        chat, user = update.effective_chat, update.effective_user
        if chat.type == ChatType.PRIVATE or user is None:
            return chat.id, 0
        return chat.id, user.id

    async def answer_question(
        self,
        update: Update,
        context: ContextTypes.DEFAULT_TYPE,
        question: str,
        zone: str | None = None,
    ) -> None:
        chat, user = update.effective_chat, update.effective_user
        reply_to = self._quote(update)
        sender = user.id if user else chat.id  # no user: a channel posting into a group
        wait = self.limiter.check(sender)
        if wait:
            if self.limiter.should_warn(sender, wait):
                await self._send(context, chat.id, RATE_LIMITED.format(seconds=math.ceil(wait)),
                                 reply_to=reply_to)
            return
        typing = asyncio.create_task(self._typing(context, chat.id))
        try:
            conversation = self.conversations.get(self.conversation_key(update))
            answer: Answer = await self._in_thread(self.service.answer, question, k=self.k,
                                                   zone=zone, conversation=conversation)
        except QuestionError:
            problem = EMPTY_QUESTION.format(example=esc(EXAMPLES[0]))
        except UnknownZone:
            problem = UNKNOWN_ZONE.format(zone=esc(zone or ""))
        else:
            problem = None
        finally:
            await typing  # before the reply, else the chat shows "typing…" after the answer
        if problem is not None:
            await self._send(context, chat.id, problem, reply_to=reply_to)
            return
        if answer.browse:
            await self._send_article_list(context, update, answer_html(answer),
                                          [a.article_id for a in answer.browse])
            return
        if answer.sentence is not None:  # under an answer, only the passages that are relevant
            answer = replace(answer, passages=relevant_passages(
                answer.passages, self.settings.answer.passage_min_ratio))
        key = self.entries.add(Entry(question, answer, _answer_article_ids(answer)))
        await self._send(context, chat.id, answer_html(answer, 0, self.per_page),
                         reply_to=reply_to, markup=self._answer_keyboard(key, answer, 0))

    async def _send_article_list(self, context, update: Update, text: str,
                                 article_ids: list[str]) -> None:
        """A list of articles with a 全文 button for each (at most 5 a row)."""
        key = self.entries.add(Entry("", None, article_ids))
        buttons = [InlineKeyboardButton(f"全文 {n}", callback_data=f"f:{key}:{n - 1}")
                   for n in range(1, len(article_ids) + 1)]
        rows = [buttons[i:i + 5] for i in range(0, len(buttons), 5)]
        await self._send(context, update.effective_chat.id, text, reply_to=self._quote(update),
                         markup=InlineKeyboardMarkup(rows))

    def _answer_keyboard(self, key: str, answer: Answer, page: int) -> InlineKeyboardMarkup:
        start, end = page_bounds(len(answer.passages), page, self.per_page)
        rows = []
        if answer.passages:
            rows.append([InlineKeyboardButton(f"全文 {n}", callback_data=f"f:{key}:{n - 1}")
                         for n in range(start + 1, end + 1)])
        navigation = []
        if start > 0:
            navigation.append(InlineKeyboardButton("上一页", callback_data=f"p:{key}:{page - 1}"))
        if end < len(answer.passages):
            navigation.append(InlineKeyboardButton("更多结果", callback_data=f"p:{key}:{page + 1}"))
        if navigation:
            rows.append(navigation)
        rows.append([InlineKeyboardButton("👍", callback_data=f"v:{key}:{UP}"),
                     InlineKeyboardButton("👎", callback_data=f"v:{key}:{DOWN}")])
        return InlineKeyboardMarkup(rows)

    async def on_private_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._guard(update, context):
            await self.answer_question(update, context, update.effective_message.text)

    async def on_group_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        question = addressed_question(update.effective_message, context.bot)
        if question is None:
            return  # a conversation among people: stay silent
        if not await self._guard(update, context):
            return
        if not question.strip():
            await self._send(context, update.effective_chat.id, HELP_TEXT,
                             reply_to=self._quote(update))
            return
        await self.answer_question(update, context, question)

    # -- commands ----------------------------------------------------------------------------
    async def cmd_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._guard(update, context):
            await self._send(context, update.effective_chat.id, START_TEXT,
                             reply_to=self._quote(update))

    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._guard(update, context):
            await self._send(context, update.effective_chat.id, HELP_TEXT,
                             reply_to=self._quote(update))

    async def cmd_ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._guard(update, context):
            return
        question = _command_rest(update.effective_message.text)
        if not question:
            await self._send(context, update.effective_chat.id, ASK_USAGE,
                             reply_to=self._quote(update))
            return
        await self.answer_question(update, context, question)

    async def cmd_zone(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._guard(update, context):
            return
        parts = _command_rest(update.effective_message.text).split(None, 1)
        if len(parts) < 2:
            await self._send(context, update.effective_chat.id, ZONE_USAGE,
                             reply_to=self._quote(update))
            return
        zone, question = parts
        await self.answer_question(update, context, question.strip(), zone=zone)

    async def cmd_new(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._guard(update, context):
            self.conversations.reset(self.conversation_key(update))
            await self._send(context, update.effective_chat.id, NEW_CONVERSATION,
                             reply_to=self._quote(update))

    async def cmd_zones(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._guard(update, context):
            return
        counts = await self._in_thread(self.service.zone_counts)
        if counts:
            lines = [f"公报中的开发区（共 {len(counts)} 个）："]
            lines += [f"• {esc(zone)}：{count} 篇" for zone, count in counts]
            text = "\n".join(lines)
        else:
            text = EMPTY_INDEX
        await self._send(context, update.effective_chat.id, text, reply_to=self._quote(update))

    async def cmd_latest(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._guard(update, context):
            return
        issue, articles = await self._in_thread(self.service.latest_issue)
        chat_id = update.effective_chat.id
        if not articles:
            await self._send(context, chat_id, EMPTY_INDEX, reply_to=self._quote(update))
            return
        lines = [f"📰 最新一期：{esc(issue)}（{len(articles)} 篇）"]
        for number, article in enumerate(articles, start=1):
            source = " · ".join(part for part in (article.zone, article.byline) if part)
            lines.append(f"{number}. {esc(article.title)}" + (f" — {esc(source)}" if source
                                                              else ""))
        key = self.entries.add(Entry("", None, [a.article_id for a in articles]))
        buttons = [InlineKeyboardButton(f"全文 {n}", callback_data=f"f:{key}:{n - 1}")
                   for n in range(1, len(articles) + 1)]
        rows = [buttons[i:i + 5] for i in range(0, len(buttons), 5)]
        await self._send(context, chat_id, "\n".join(lines), reply_to=self._quote(update),
                         markup=InlineKeyboardMarkup(rows))

    async def cmd_reload(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._guard(update, context):
            return
        chat_id, user = update.effective_chat.id, update.effective_user
        if not self.access.is_admin(user and user.id):
            await self._send(context, chat_id, NOT_ADMIN, reply_to=self._quote(update))
            return
        try:
            changed = await asyncio.to_thread(self.service.reload_if_changed)
        except Exception as exc:  # the old index stays in service; say why the new one did not
            log.exception("reload requested by admin %s failed", user.id)
            text = f"❌ 新索引加载失败，仍在使用原来的索引：{esc(str(exc))}"
        else:
            verb = "✅ 已加载新索引" if changed else "索引没有变化"
            text = f"{verb}：{esc(self._snapshot_name())}"
        await self._send(context, chat_id, text, reply_to=self._quote(update))

    async def on_unknown_command(self, update: Update,
                                 context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._guard(update, context):
            await self._send(context, update.effective_chat.id, UNKNOWN_COMMAND)

    # -- buttons -----------------------------------------------------------------------------
    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        message = query.message if isinstance(query.message, Message) else None
        chat = query.message.chat if query.message is not None else None
        if not self.access.allows(query.from_user.id, chat and chat.id, chat and chat.type):
            log.info("refused button of user %s in chat %s", query.from_user.id,
                     chat and chat.id)
            await query.answer(REFUSED_BUTTON, show_alert=True)
            return
        kind, _, rest = (query.data or "").partition(":")
        key, _, argument = rest.partition(":")
        entry = self.entries.get(key)
        if entry is None or kind not in ("p", "f", "v"):
            await query.answer(EXPIRED, show_alert=True)
            return
        chat_id = chat.id if chat else query.from_user.id
        if kind == "p" and entry.answer is not None and argument.isdigit():
            await self._show_page(context, query, message, chat_id, key, entry, int(argument))
        elif kind == "f" and argument.isdigit() and int(argument) < len(entry.article_ids):
            await self._show_article(context, query, message, chat_id,
                                     entry.article_ids[int(argument)])
        elif kind == "v" and argument in (UP, DOWN) and entry.answer is not None:
            await self._vote(query, chat_id, entry, argument)
        else:
            await query.answer(EXPIRED, show_alert=True)

    async def _show_page(self, context, query, message, chat_id, key, entry, page) -> None:
        text = answer_html(entry.answer, page, self.per_page)
        markup = self._answer_keyboard(key, entry.answer, page)
        if message is not None and utf16_len(text) <= MAX_MESSAGE_CHARS:
            try:
                await query.edit_message_text(text, parse_mode=ParseMode.HTML,
                                              reply_markup=markup,
                                              link_preview_options=_NO_PREVIEW)
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():  # a double press: nothing to do
                    raise
        else:  # the message is too old to edit, or the page too long for one message
            await self._send(context, chat_id, text, markup=markup)
        await query.answer()

    async def _show_article(self, context, query, message, chat_id, article_id) -> None:
        article = await self._in_thread(self.service.article, article_id)
        if article is None:
            await query.answer(ARTICLE_GONE, show_alert=True)
            return
        await self._send(context, chat_id, article_html(article),
                         reply_to=message.message_id if message is not None else None)
        await query.answer()

    async def _vote(self, query, chat_id: int, entry: Entry, vote: str) -> None:
        user_id = query.from_user.id
        if entry.votes.get(user_id) == vote:
            await query.answer(ALREADY_VOTED)
            return
        answer = entry.answer
        await asyncio.to_thread(
            self.feedback.record,
            vote=vote,
            user_id=user_id,
            chat_id=chat_id,
            question=entry.question,
            answer=answer.sentence.text if answer.sentence else None,
            article_ids=entry.article_ids,
        )
        entry.votes[user_id] = vote
        await query.answer(THANKS[vote])

    # -- errors and reloads ------------------------------------------------------------------
    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log, then apologise to whoever was waiting; never raise (the bot keeps serving)."""
        where = ""
        if isinstance(update, Update):
            chat = update.effective_chat
            where = f" (update {update.update_id}, chat {chat.id if chat else '?'})"
        log.error("error while handling an update%s", where, exc_info=context.error)
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                try:
                    await update.callback_query.answer(APOLOGY, show_alert=True)
                    return
                except TelegramError:
                    pass  # already answered: say it in the chat instead
            if update.effective_chat is not None:
                await context.bot.send_message(update.effective_chat.id, APOLOGY)
        except Exception as exc:  # e.g. Telegram unreachable: the log line is all we can do
            log.warning("could not send the apology: %s", exc)

    async def _watch_index(self) -> None:
        """Swap in a new index snapshot written by an ingest, without a restart."""
        failed: str | None = None
        store = getattr(self.service, "store", None)
        while True:
            await asyncio.sleep(self.tg.reload_check_seconds)
            current = None
            try:
                if store is not None:
                    current = await asyncio.to_thread(store.current_name)
                    if current == failed:
                        continue  # this snapshot did not load: wait for the next one
                if await asyncio.to_thread(self.service.reload_if_changed):
                    log.info("hot reload: now answering from index %s", self._snapshot_name())
                failed = None
            except Exception:
                failed = current
                log.exception("could not load index snapshot %s; still answering from %s",
                              current, self._snapshot_name())


def _answer_article_ids(answer: Answer) -> list[str]:
    """Passage articles in rank order, the answer sentence's article first."""
    ids = [hit.chunk.article_id for hit in answer.passages]
    if answer.sentence is not None:
        first = answer.sentence.chunk.article_id
        ids = [first] + [i for i in ids if i != first]
    return ids


def _command_rest(text: str | None) -> str:
    """What follows `/command` or `/command@bot`."""
    parts = (text or "").split(None, 1)
    return parts[1].strip() if len(parts) > 1 else ""


def addressed_question(message: Message | None, bot: Any) -> str | None:
    """In a group: the question if the message is for this bot, else None.

    For the bot: it mentions @bot (a mention entity with the bot's username, or a text mention
    of the bot's user), or it replies to one of the bot's messages. The mention is removed
    from the question.
    """
    if message is None or not message.text:
        return None
    username = "@" + (bot.username or "").lower()
    text = message.text
    mentioned = False
    entities = message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION])
    for entity, value in entities.items():
        if (entity.type == MessageEntity.MENTION and value.lower() == username) or (
            entity.type == MessageEntity.TEXT_MENTION and entity.user
            and entity.user.id == bot.id
        ):
            mentioned = True
            text = text.replace(value, " ", 1)
    reply = message.reply_to_message
    replied = reply is not None and reply.from_user is not None and reply.from_user.id == bot.id
    if not (mentioned or replied):
        return None
    return " ".join(text.split())


# -- the Application -----------------------------------------------------------------------------
def build_application(
    settings: Settings,
    service: Any = None,
    builder: ApplicationBuilder | None = None,
    clock: Callable[[], float] | None = None,
) -> Application:
    """The bot's Application; `run_bot` runs it, tests drive it with their own builder."""
    telegram = settings.telegram
    if service is None:
        from qa_bot.service import QAService

        service = QAService(settings, show_progress=False)
    if builder is None:
        check_settings(telegram)
        builder = Application.builder().token(telegram.token)
        if telegram.base_url:
            base = telegram.base_url.rstrip("/")
            builder = builder.base_url(base)
            if base.endswith("/bot"):
                builder = builder.base_file_url(base[: -len("bot")] + "file/bot")
    bot = QABot(settings, service, clock=clock)
    builder = (
        builder.post_init(bot.post_init)
        .post_stop(bot.post_stop)
        .post_shutdown(bot.post_shutdown)
        .concurrent_updates(max(telegram.concurrent_updates, 1))
    )
    if telegram.flood_control:
        # Stays under Telegram's flood limits and retries after a 429 instead of failing.
        builder = builder.rate_limiter(AIORateLimiter(max_retries=3))
    app = builder.build()
    bot.register(app)
    app.bot_data["qa_bot"] = bot
    return app


def _network_retry_without_traceback(record: logging.LogRecord) -> bool:
    """PTB logs each failed network try with a full traceback: keep one line per try, and
    none for the start-up try, which `run_bot` reports as one actionable line."""
    message = record.getMessage()
    if not message.startswith("Network Retry Loop"):
        return True
    record.exc_info = None
    record.exc_text = None
    return "Bootstrap" not in message


def run_bot(settings: Settings) -> int:
    """`qa-bot bot`: serve until SIGINT/SIGTERM. Configuration problems raise ConfigError."""
    telegram = settings.telegram
    check_settings(telegram)
    secret = telegram.webhook_secret or secrets.token_urlsafe(32)
    redact_uncaught(install_redactor(telegram.token, extra_secrets=[secret]))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    logging.getLogger("telegram.ext").addFilter(_network_retry_without_traceback)
    app = build_application(settings)
    log.info("starting the Telegram bot (%s)", telegram.mode)
    try:
        if telegram.mode == "webhook":
            app.run_webhook(
                listen=telegram.webhook_listen,
                port=telegram.webhook_port,
                url_path=urlparse(telegram.webhook_url).path.strip("/"),
                webhook_url=telegram.webhook_url,
                secret_token=secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            app.run_polling(allowed_updates=ALLOWED_UPDATES)
    except InvalidToken:  # its message quotes the token: say it without
        raise ConfigError(
            f"the Bot API rejected the token in {TOKEN_ENV} (revoked, or mistyped?): get the "
            "current one from @BotFather"
        ) from None
    except NetworkError as exc:  # an outage at start: one line saying what to check
        where = telegram.base_url or "https://api.telegram.org"
        raise TelegramUnreachable(
            f"cannot reach the Telegram Bot API at {where} ({exc}); check the network, a proxy "
            "(HTTPS_PROXY) or [telegram] base_url, then start the bot again"
        ) from None
    return 0
