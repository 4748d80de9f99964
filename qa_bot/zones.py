"""The zone table: full zone names, their short forms, and finding them in questions.

Staff name zones loosely: 侯马, 侯马开发区, 运城经开区 for 运城经济技术开发区. The table is built
from the zones of the indexed articles plus `config/zones.toml` (hand-kept aliases), and serves
three uses: jieba's user dictionary (zone names stay whole tokens), `--zone` filters that accept
any alias, and preferring the zone a question names.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from qa_bot.chinese import to_simplified

# Longest suffix first: the place name is what remains.
_ZONE_SUFFIXES = (
    "经济技术开发区", "高新技术产业开发区", "高新技术开发区", "经济开发区", "工业园区", "开发区",
    "经开区", "高新区", "园区", "县", "市", "区",
)
_SHORT_FORMS = ("经济技术开发区", "经济开发区", "开发区", "经开区", "高新区")
# The tail of a zone-like name ("太原经开区", "朔州开发区"); the place is the 2–4 characters before.
_ZONE_TAIL = re.compile(r"经济技术开发区|高新技术产业开发区|经济开发区|开发区|经开区|高新区")
# Characters that never end a place name: "哪个开发区", "全省开发区", "该开发区" are no zone.
_HAN_PAIR = re.compile(r"[\u4e00-\u9fff]{2}")
_NOT_PLACE = set("的个些该本各全省哪那这此其每几们和与及在到赴去对从向为是了有等")


class ZoneError(ValueError):
    pass


def place_of(zone: str) -> str:
    """The place part of a zone name: 运城经济技术开发区 → 运城, 沁源县 → 沁源."""
    for suffix in _ZONE_SUFFIXES:
        if zone.endswith(suffix) and len(zone) - len(suffix) >= 2:
            return zone[: -len(suffix)]
    return zone


class ZoneTable:
    """Canonical zone names with every alias that refers to each."""

    def __init__(self, aliases: dict[str, set[str]], mentioned: Iterable[str] = ()) -> None:
        self._canonical_of: dict[str, str] = {}
        for zone, names in aliases.items():
            for name in {zone, *names}:
                self._canonical_of.setdefault(to_simplified(name), zone)
        # Longest alias first, so 运城经济技术开发区 wins over 运城.
        self._by_length = sorted(self._canonical_of, key=len, reverse=True)
        # Places the corpus talks about, zone of an article or not (上党 in a 沁源 article).
        self._known_places = {place_of(to_simplified(name)) for name in self._canonical_of}
        self._known_places.update(place_of(to_simplified(name)) for name in mentioned)

    @classmethod
    def build(
        cls, zones: Iterable[str], texts: Iterable[str] = (), alias_file: Path | None = None
    ) -> ZoneTable:
        """Zones of the articles, aliases from the file, and zone names mentioned in texts."""
        aliases: dict[str, set[str]] = {}
        for zone in zones:
            if not zone:
                continue
            place = place_of(zone)
            names = aliases.setdefault(zone, set())
            if place != zone:
                names.add(place)
                names.update(place + form for form in _SHORT_FORMS)
        for zone, names in _read_alias_file(alias_file).items():
            aliases.setdefault(zone, set()).update(names)
        mentioned = {name for text in texts for name in zone_mentions(text)}
        return cls(aliases, mentioned)

    @property
    def zones(self) -> list[str]:
        return sorted(set(self._canonical_of.values()))

    def words(self) -> list[str]:
        """Every name and alias of at least 2 characters, for jieba's user dictionary."""
        return sorted(name for name in self._canonical_of if len(name) >= 2)

    def aliases_by_length(self) -> list[str]:
        """Every name and alias (simplified), longest first."""
        return list(self._by_length)

    def canonical(self, name: str) -> str | None:
        return self._canonical_of.get(to_simplified(name.strip()))

    def find(self, text: str) -> list[str]:
        """Zones named in text, in order of first mention, longest alias matched first."""
        remaining = to_simplified(text)
        found: list[tuple[int, str]] = []
        for alias in self._by_length:
            position = remaining.find(alias)
            if position >= 0:
                found.append((position, self._canonical_of[alias]))
                remaining = remaining.replace(alias, "\x00" * len(alias))
        ordered: list[str] = []
        for _, zone in sorted(found):
            if zone not in ordered:
                ordered.append(zone)
        return ordered

    def unknown_mentions(self, text: str) -> list[str]:
        """Zone-like names that the corpus never mentions (太原经开区 in a question)."""
        text = to_simplified(text)
        unknown = []
        for match in _ZONE_TAIL.finditer(text):
            before = text[max(0, match.start() - 4) : match.start()]
            if not _HAN_PAIR.fullmatch(before[-2:]) or _NOT_PLACE.intersection(before[-2:]):
                continue
            if not any(before[-k:] in self._known_places for k in (2, 3, 4)):
                unknown.append(before[-2:] + match.group())
        return unknown


def zone_mentions(text: str) -> set[str]:
    """Zone-like names in text, each with a 2-, 3- and 4-character place candidate."""
    text = to_simplified(text)
    names = set()
    for match in _ZONE_TAIL.finditer(text):
        for k in (2, 3, 4):
            place = text[max(0, match.start() - k) : match.start()]
            if _HAN_PAIR.fullmatch(place[-2:]) and not _NOT_PLACE.intersection(place[-2:]):
                names.add(place + match.group())
    return names


def _read_alias_file(path: Path | None) -> dict[str, set[str]]:
    if path is None or not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ZoneError(f"{path}: not valid TOML ({exc})") from exc
    table = data.get("aliases", {})
    if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
        raise ZoneError(f'{path}: expected [aliases] with lines like "全名" = ["简称", ...]')
    return {zone: set(names) for zone, names in table.items()}
