"""👍/👎 feedback: an append-only JSON-lines store, and its export as eval rows.

A row holds exactly: `timestamp`, `vote` ("up"/"down"), `user_id`, `chat_id`, `question`,
`answer` (the answer sentence, null when the bot declined) and `article_ids` (the article of
the answer sentence first, then the other passages shown, in rank order). Nothing else: no
names, no message texts beyond the question, never the token.

Export (`qa-bot feedback export`), after keeping each user's last vote per question and answer:
* 👍 on an answer → `{"question", "title", "answers": [answer sentence]}`: the answer is gold,
  `qa-bot eval` then checks the bot still finds that article and sentence. The title is looked
  up in the index; an article no longer indexed gives `passage_id` instead of `title`.
* 👍 on a decline → `{"question", "title": null, "answers": null}`: an unanswerable question.
* 👎 → not an eval row: a wrong answer says nothing about the right one. These go to
  `--review FILE` as `{"question", "rejected_answer", "rejected_article_ids", "downvotes"}` for
  a maintainer to complete with the right title and answers. An answer with both votes is
  treated as 👎 (disputed answers are not gold).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

UP, DOWN = "up", "down"
FIELDS = ("timestamp", "vote", "user_id", "chat_id", "question", "answer", "article_ids")


class FeedbackStore:
    """Appends rows to a JSONL file; safe to call from several threads of one process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()

    def record(
        self,
        *,
        vote: str,
        user_id: int,
        chat_id: int,
        question: str,
        answer: str | None,
        article_ids: Iterable[str],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> dict:
        if vote not in (UP, DOWN):
            raise ValueError(f"vote must be {UP!r} or {DOWN!r}, not {vote!r}")
        row = {
            "timestamp": now().isoformat(timespec="seconds"),
            "vote": vote,
            "user_id": int(user_id),
            "chat_id": int(chat_id),
            "question": question,
            "answer": answer,
            "article_ids": list(article_ids),
        }
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0o600: the rows carry user ids.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(line)
        return row

    def rows(self) -> Iterator[dict]:
        yield from read_rows(self.path)


def read_rows(path: Path) -> Iterator[dict]:
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                log.warning("%s:%d: not JSON, skipped", path, number)
                continue
            if not isinstance(row, dict) or row.get("vote") not in (UP, DOWN) or not row.get(
                "question"
            ):
                log.warning("%s:%d: not a feedback row, skipped", path, number)
                continue
            yield row


def export_rows(
    rows: Iterable[dict], title_of: Callable[[str], str | None]
) -> tuple[list[dict], list[dict]]:
    """(eval rows, review rows) from feedback rows; see the module docstring."""
    last_vote: dict[tuple, dict] = {}
    for row in rows:
        key = (row.get("user_id"), row["question"], row.get("answer"))
        last_vote[key] = row  # a user who changed their mind counts once, with the last vote
    answers: dict[tuple, dict] = {}
    for row in last_vote.values():
        key = (row["question"], row.get("answer"))
        entry = answers.setdefault(key, {"row": row, "up": 0, "down": 0})
        entry[row["vote"]] += 1
    eval_rows, review_rows = [], []
    seen_questions: set[str] = set()
    for (question, answer), entry in answers.items():
        ids = list(entry["row"].get("article_ids") or [])
        if entry["down"]:
            review_rows.append({
                "question": question,
                "rejected_answer": answer,
                "rejected_article_ids": ids[:1] if answer else ids,
                "downvotes": entry["down"],
            })
            continue
        if question in seen_questions:
            continue  # two different 👍 answers to one question: keep the first
        seen_questions.add(question)
        if answer is None:
            eval_rows.append({"question": question, "title": None, "answers": None})
            continue
        title = title_of(ids[0]) if ids else None
        if title:
            eval_rows.append({"question": question, "title": title, "answers": [answer]})
        elif ids:
            eval_rows.append({"question": question, "passage_id": ids[0], "answers": [answer]})
    return eval_rows, review_rows
