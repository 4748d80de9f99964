"""Fixtures for end-to-end bot tests against the local Telegram Bot API emulator.

* ``emulator`` (session): one ``Emulator`` process for the whole run. If Node.js or
  ``tests/telegram_emulator/node_modules`` is missing, every e2e test fails (never skips) with
  the fix: ``npm ci --prefix tests/telegram_emulator``.
* ``bot_token``: a fresh token per test, so tests never see each other's updates or calls.
* ``tg``: an ``EmulatorClient`` for that token (plays the users, reads what the bot did).
* ``app_builder``: ``Application.builder()`` with that token and the emulator's base_url.
* ``run_bot``: ``run_bot(app, **BotRunner options) -> BotRunner``; started at once, stopped at
  teardown, and the test fails there if a handler raised (unless it called ``take_errors()``).

Every test under tests/e2e/ is marked ``e2e`` automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

try:  # tests/ is on sys.path in pytest's default (prepend) import mode
    from telegram_harness import BotRunner, Emulator, EmulatorClient, EmulatorNotInstalled
except ModuleNotFoundError:  # tests/ imported as a package
    from tests.telegram_harness import BotRunner, Emulator, EmulatorClient, EmulatorNotInstalled

if TYPE_CHECKING:
    from telegram.ext import Application, ApplicationBuilder

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator()
    problem = None
    try:
        emu.start()
    except EmulatorNotInstalled as exc:
        problem = str(exc)
    if problem:  # fail, never skip: a missing emulator must not pass unnoticed
        pytest.fail(problem, pytrace=False)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def bot_token(emulator: Emulator) -> str:
    return emulator.new_token()


@pytest.fixture
def tg(emulator: Emulator, bot_token: str) -> Iterator[EmulatorClient]:
    with emulator.client(bot_token) as client:
        yield client


@pytest.fixture
def app_builder(emulator: Emulator, bot_token: str) -> ApplicationBuilder:
    return emulator.application_builder(bot_token)


@pytest.fixture
def run_bot() -> Iterator[Callable[..., BotRunner]]:
    runners: list[BotRunner] = []

    def start(app: Application, **options: Any) -> BotRunner:
        runner = BotRunner(app, **options)
        runners.append(runner)
        return runner.start()

    yield start
    stop_errors = []
    for runner in reversed(runners):
        try:
            runner.stop()
        except Exception as exc:
            stop_errors.append(exc)
    if stop_errors:
        raise stop_errors[0]
    for runner in runners:
        runner.raise_if_errors()
