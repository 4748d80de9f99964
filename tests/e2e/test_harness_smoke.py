"""Smoke tests of the e2e infrastructure (emulator + harness) with a toy bot.

They check the plumbing only; qa_bot's own bot gets its own e2e tests built on the same fixtures.
"""

from __future__ import annotations

import statistics
import time

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, NetworkError, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

try:
    from telegram_harness import EmulatorClient, group_chat, measure_round_trips, private_chat
except ModuleNotFoundError:
    from tests.telegram_harness import EmulatorClient, group_chat, measure_round_trips, private_chat

pytestmark = pytest.mark.e2e

ALICE = 1001
BOB = 1002


def build_toy_app(builder: ApplicationBuilder) -> Application:
    """A tiny bot: /start (HTML), /menu (inline keyboard), echo in private, mentions in groups."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(
            "<b>Hello</b>, I echo &amp; answer mentions.", parse_mode=ParseMode.HTML, do_quote=True
        )

    async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("A", callback_data="a"),
                    InlineKeyboardButton("B", callback_data="b"),
                ]
            ]
        )
        await update.effective_message.reply_text("Pick one", reply_markup=keyboard)

    async def picked(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        await query.answer(f"You picked {query.data}")
        await query.edit_message_text(f"You picked <i>{query.data}</i>", parse_mode=ParseMode.HTML)

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
        await update.message.reply_text(update.message.text, do_quote=True)

    async def mentioned(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if f"@{context.bot.username}".lower() in update.message.text.lower():
            await update.message.reply_text(
                f"You called, {update.effective_user.first_name}?", do_quote=True
            )

    app = builder.build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("menu", menu))
    app.add_handler(CallbackQueryHandler(picked))
    app.add_handler(
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, echo)
    )
    app.add_handler(
        MessageHandler(filters.ChatType.GROUPS & filters.Entity(MessageEntity.MENTION), mentioned)
    )
    return app


def test_echo_in_private_chat(tg: EmulatorClient, app_builder, run_bot) -> None:
    run_bot(build_toy_app(app_builder))
    sent = tg.send_message(private_chat(ALICE), ALICE, "hello 世界 👋")
    reply = tg.next_bot_message(ALICE)
    assert reply.text == "hello 世界 👋"
    assert reply.is_bot and reply.from_user["username"] == "QaTestBot"
    assert reply.chat == {
        "id": ALICE,
        "type": "private",
        "first_name": f"User {ALICE}",
        "username": f"user{ALICE}",
    }
    assert reply.reply_to_message_id == sent["message_id"]
    # sendChatAction is a stub, visible only in the recorded calls
    (action,) = tg.calls("sendChatAction")
    assert action.ok and action.params == {"chat_id": str(ALICE), "action": "typing"}
    assert [m.text for m in tg.history(ALICE)] == ["hello 世界 👋", "hello 世界 👋"]


def test_commands_and_html(tg: EmulatorClient, app_builder, run_bot) -> None:
    run_bot(build_toy_app(app_builder))
    tg.send_command(ALICE, ALICE, "start")
    hello = tg.next_bot_message(ALICE)
    assert hello.text == "Hello, I echo & answer mentions."  # what the user sees
    assert hello.raw_text.startswith("<b>Hello</b>") and hello.parse_mode == "HTML"
    assert hello.entity_texts("bold") == ["Hello"]
    # In a group, clients address commands to the bot: /start@QaTestBot
    team = group_chat(-200, "Team")
    tg.send_command(team, BOB, "start", to_bot=True)
    assert tg.next_bot_message(-200).text.startswith("Hello")
    # ... and a command for another bot is ignored. Updates are handled in order, so if it
    # were answered, that answer would be the next bot message.
    tg.send_command(team, BOB, "start", to_bot="OtherBot")
    plain = tg.send_command(team, BOB, "start")
    assert tg.next_bot_message(-200).reply_to_message_id == plain["message_id"]


def test_inline_keyboard_callback_edits_message(tg: EmulatorClient, app_builder, run_bot) -> None:
    run_bot(build_toy_app(app_builder))
    tg.send_command(ALICE, ALICE, "menu")
    menu = tg.next_bot_message(ALICE)
    assert menu.button_texts == ["A", "B"]

    query = tg.press(menu, "B")
    edited = tg.wait_edit(menu)
    assert edited.text == "You picked b"
    assert edited.entity_texts("italic") == ["b"]
    assert edited.buttons == []  # an edit without reply_markup drops the keyboard, as on Telegram
    answer = tg.wait_call("answerCallbackQuery")
    assert answer.ok
    assert answer.params["callback_query_id"] == query["id"]
    assert answer.params["text"] == "You picked b"
    assert tg.new_bot_messages(ALICE) == []  # edited in place, nothing new sent


def test_group_chat_with_and_without_mention(tg: EmulatorClient, app_builder, run_bot) -> None:
    run_bot(build_toy_app(app_builder))
    team = group_chat(-300, "Team")
    tg.send_message(team, BOB, "just chatting, no bot here")
    mention = tg.mention(team, BOB, "@QaTestBot are you there?")
    reply = tg.next_bot_message(-300)
    # Updates are handled in order: had the first message been answered, that answer would
    # be the first bot message.
    assert reply.reply_to_message_id == mention["message_id"]
    assert reply.text == f"You called, User {BOB}?"
    assert reply.chat == {"id": -300, "type": "group", "title": "Team"}
    assert [c.params["text"] for c in tg.calls("sendMessage")] == [reply.text]


def test_bot_survives_500_storm_on_get_updates(tg: EmulatorClient, app_builder, run_bot) -> None:
    # poll_interval also scales PTB's back-off after errors (1 s, 1.5 s, ... at 0)
    runner = run_bot(build_toy_app(app_builder), poll_interval=0.01)
    assert tg.ask(ALICE, ALICE, "before").text == "before"

    tg.inject_faults(500, count=5, methods=["getUpdates"], interrupt=True)
    assert tg.ask(ALICE, ALICE, "after the storm").text == "after the storm"

    statuses = [c.status for c in tg.calls("getUpdates")]
    assert statuses.count(500) == 5
    assert len(runner.polling_errors) == 5
    assert all(isinstance(e, NetworkError) for e in runner.polling_errors)


def test_hanging_send_message_times_out_then_bot_recovers(
    tg: EmulatorClient, app_builder, run_bot
) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        # a short read timeout only where the test makes the emulator hang
        timeout = 0.3 if update.message.text == "lost" else None
        await update.message.reply_text(update.message.text, read_timeout=timeout)

    app = app_builder.build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    runner = run_bot(app)
    tg.inject_faults(None, count=1, methods=["sendMessage"], delay_ms=3000)
    tg.send_message(ALICE, ALICE, "lost")
    aborted = tg.wait_call("sendMessage", lambda c: c.status == "aborted")
    assert aborted.params["text"] == "lost"
    assert tg.ask(ALICE, ALICE, "again").text == "again"
    [error] = runner.take_errors()
    assert isinstance(error, TimedOut)
    assert [m.text for m in tg.bot_messages(ALICE)] == ["again"]


def test_stubs_unsupported_methods_and_post_init(tg: EmulatorClient, app_builder, run_bot) -> None:
    async def post_init(app: Application) -> None:
        await app.bot.set_my_commands([("start", "Say hello"), ("menu", "Show a menu")])
        await app.bot.set_my_description("Toy bot")

    runner = run_bot(build_toy_app(app_builder.post_init(post_init)))
    # post_init ran before run_bot returned
    assert [c.method for c in tg.calls() if c.method.startswith("setMy")] == [
        "setMyCommands",
        "setMyDescription",
    ]
    bot = runner.bot
    commands = runner.run_coroutine(bot.get_my_commands())
    assert [(c.command, c.description) for c in commands] == [
        ("start", "Say hello"),
        ("menu", "Show a menu"),
    ]
    assert runner.run_coroutine(bot.delete_my_commands()) is True
    assert runner.run_coroutine(bot.get_my_commands()) == ()
    assert runner.run_coroutine(bot.send_chat_action(ALICE, ChatAction.TYPING)) is True

    with pytest.raises(BadRequest, match=r"(?i)sendphoto' is not supported"):
        runner.run_coroutine(bot.send_photo(ALICE, b"\x89PNG fake"))
    assert tg.calls("sendPhoto")[0].status == 400


def test_strict_mode_rejects_what_telegram_rejects(
    tg: EmulatorClient, app_builder, run_bot
) -> None:
    runner = run_bot(build_toy_app(app_builder))
    bot = runner.bot
    run = runner.run_coroutine

    with pytest.raises(BadRequest, match=r"(?i)can.t parse entities: unsupported start tag \"br\""):
        run(bot.send_message(ALICE, "line<br>line", parse_mode=ParseMode.HTML))
    with pytest.raises(BadRequest, match=r"(?i)can't find end tag"):
        run(bot.send_message(ALICE, "<b>open", parse_mode=ParseMode.HTML))
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        run(bot.send_message(ALICE, "x" * 4097))
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        run(bot.send_message(ALICE, "<b> </b>", parse_mode=ParseMode.HTML))
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        run(bot.edit_message_text("new", chat_id=ALICE, message_id=987654))

    msg = run(bot.send_message(ALICE, "4096 is fine: " + "x" * 4082))
    assert msg.date.year >= 2024 and msg.from_user.is_bot and msg.chat.type == "private"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        run(msg.edit_text(msg.text))
    assert run(msg.delete()) is True
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        run(msg.delete())
    assert not [
        c for c in tg.calls() if c.status not in (200, 400, "aborted") and c.method != "getUpdates"
    ]


def test_malformed_client_input_gets_400_and_emulator_survives(tg: EmulatorClient) -> None:
    bad_bodies = [
        ("/sendMessage", {"chat": {"id": 1}, "from": {"id": 1}, "text": "no token"}),
        ("/sendMessage", {"botToken": tg.token, "from": {"id": 1}, "text": "no chat"}),
        ("/sendMessage", {"botToken": tg.token, "chat": {"id": 1}, "from": {"id": 1}}),
        (
            "/sendCommand",
            {"botToken": tg.token, "chat": {"id": 1}, "from": {"id": 1}, "text": "/x"},
        ),
        ("/sendCallback", {"botToken": tg.token, "from": {"id": 1}, "data": "x"}),
        ("/sendMessage", ["not", "an", "object"]),
        ("/getUpdates", {}),
        ("/_faults", {"status": 200}),
    ]
    for route, body in bad_bodies:
        answer = tg.post(route, body, check=False)
        assert answer["status_code"] == 400, (route, body, answer)
        assert answer["ok"] is False
    assert tg._http.get("/_health").json()["ok"] is True


def test_webhook_mode_with_secret_token(tg: EmulatorClient, emulator, app_builder, run_bot) -> None:
    tg.send_message(ALICE, ALICE, "sent before the bot started")
    runner = run_bot(build_toy_app(app_builder), webhook=True)
    (set_webhook,) = tg.calls("setWebhook")
    assert set_webhook.params["url"] == runner.webhook_url
    assert set_webhook.params["secret_token"] == runner.webhook_secret
    # pending updates are pushed to the new webhook (retried until PTB's server listens)
    assert tg.next_bot_message(ALICE).text == "sent before the bot started"
    assert tg.ask(ALICE, ALICE, "via webhook").text == "via webhook"
    assert not tg.calls("getUpdates")
    assert not [line for line in emulator.stderr_lines if "failed for good" in line]


def test_round_trip_latency_and_long_polling(
    tg: EmulatorClient, app_builder, run_bot, record_property
) -> None:
    run_bot(build_toy_app(app_builder))
    started = time.perf_counter()
    samples = measure_round_trips(tg, ALICE, n=50)
    elapsed = time.perf_counter() - started
    median_ms = statistics.median(samples) * 1000
    record_property("round_trip_median_ms", round(median_ms, 1))
    print(
        f"\nround trip over 50 echoes: median {median_ms:.1f} ms, max {max(samples) * 1000:.1f} ms"
    )
    # ~10-30 ms on an idle machine, ~150 ms with the CPUs saturated: only catch a broken loop
    assert median_ms < 1000
    # Long polling, not a busy loop: about one getUpdates per update (plus the pending one).
    polls = len(tg.calls("getUpdates"))
    assert polls <= 2 * 50 + 5, f"{polls} getUpdates in {elapsed:.2f} s"
