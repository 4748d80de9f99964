"""Entry point kept for `qa-bot bot`; the bot lives in the `qa_bot.telegram` package."""

from qa_bot.telegram import build_application, run_bot

__all__ = ["build_application", "run_bot"]
