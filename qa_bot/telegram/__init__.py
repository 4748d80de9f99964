"""The Telegram bot (`qa-bot bot`): a thin shell over `QAService`.

app.py: handlers, the Application and `run_bot`; render_html.py: HTML replies and safe
splitting; access.py: allow-list, rate limit, token redaction; feedback.py: 👍/👎 store and
export; state.py: what recent buttons refer to; texts.py: everything the bot says.
"""

from qa_bot.telegram.app import build_application, run_bot

__all__ = ["build_application", "run_bot"]
