"""End-to-end tests against the local Telegram Bot API emulator (see tests/telegram_harness.py)."""
