"""What the inline buttons of recent messages refer to, kept in memory and bounded."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from qa_bot.records import Answer


@dataclass
class Entry:
    """What the buttons of one bot message refer to: an answer, or a list of articles."""

    question: str
    answer: Answer | None
    article_ids: list[str]
    votes: dict[int, str] = field(default_factory=dict)  # user id → last vote


class EntryCache:
    """The last `size` entries, keyed by a short random id that fits in callback_data."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def add(self, entry: Entry) -> str:
        key = secrets.token_urlsafe(6)
        while key in self._entries:
            key = secrets.token_urlsafe(6)
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return key

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def __len__(self) -> int:
        return len(self._entries)
