"""A bulletin issue's structure: section lines, titles, subtitles, paragraphs, print artifacts.

An issue (plain text, Markdown-ish; PDF/DOCX/HTML readers produce the same) is a sequence of
articles, each laid out as::

    侯马经济开发区                      ← section line (optional: else the one above applies)
    ## 召开2023年项目建设第19次调度会     ← title (## or #)
    ——走进左云经济技术开发区              ← subtitle (optional, only right after the title)
    本刊讯 6月12日，……                   ← lead
    ### 小标题                           ← section heading inside the article (optional)
    ……（贺玉斌）                         ← paragraphs, byline at the end (see bylines.py)

Print artifacts are repaired: paragraphs split mid-sentence (page breaks) are joined, page
numbers dropped, ``<sup>`` becomes a superscript. Zones are resolved in zones_in_text.py.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from qa_bot.parsing.bylines import extract_bylines, is_credit_line, is_whole_byline
from qa_bot.parsing.reading import ZERO_WIDTH_RE
from qa_bot.parsing.zones_in_text import (
    has_place_evidence,
    is_person_line,
    resolve_zone,
)
from qa_bot.records import Article, SourceProblem

_LOG = logging.getLogger(__name__)

# A paragraph ending in one of these is complete; otherwise the next line continues it.
# The colon is included because a paragraph introducing a list ends with one.
_PARA_END = frozenset("。！？；…!?;：:”’」』）)》】〕]\"'")

_TITLE_RE = re.compile(r"^(#{1,2})(?!#)[ \t\u3000]*(.*?)[ \t\u3000#]*$")
_SECTION_RE = re.compile(r"^#{3,6}(?!#)[ \t\u3000]*(.*?)[ \t\u3000#]*$")
_SUBTITLE_RE = re.compile(r"^[—–\-－─―]{1,4}[ \t\u3000]*(\S.*)$")
_LEAD_RE = re.compile(r"^本[刊报報][讯訊]")
# Page numbers left by PDF export: "3", "- 3 -", "— 12 —", "第3页".
_PAGE_NUMBER_RE = re.compile(r"^[-—–－·\s]*(?:第\s*)?\d{1,3}\s*页?[-—–－·\s]*$")
# A line starting a numbered item that has no punctuation at all is a heading, not a fragment.
_ENUM_HEADING_RE = re.compile(
    r"^(?:[一二三四五六七八九十]+[、是]|[（(][一二三四五六七八九十\d]+[）)]|\d+[、．]|\d+\.(?!\d)"
    r"|第[一二三四五六七八九十]+[，、是])"
)
_HEADING_PUNCT_RE = re.compile(r"[。，；！？：、,;!?:]")
# A zone line may list titles with 、 (运城市委书记、市长丁小强) but has no sentence in it.
_ZONE_LINE_PUNCT_RE = re.compile(r"[。，；！？：,;!?:]")

_SUP_RE = re.compile(r"<(sup|sub)>\s*([^<]{0,12}?)\s*</\1>", re.IGNORECASE)
_INLINE_TAG_RE = re.compile(r"</?(?:b|i|u|em|strong|span|font|small|big|br)\b[^>]*>", re.IGNORECASE)
_SUPERSCRIPT = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_SUBSCRIPT = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")

_TEXT, _TITLE, _SECTION, _SUBTITLE, _ZONE, _OTHER = range(6)


@dataclass
class _Draft:
    title: str
    title_line: int
    own_zone: tuple[int, str] | None
    new_section: bool = False  # a column header (工作动态) came before it: the zone above ends
    subtitle: str = ""
    body: list[tuple[int, str, bool]] = field(default_factory=list)  # (line, text, is_heading)


def _clean_line(raw: str) -> str:
    line = raw.strip()
    if not line:
        return ""
    if "<" in line:
        line = _SUP_RE.sub(_script_digits, line)
        line = _INLINE_TAG_RE.sub("", line).strip()
    if "&" in line:
        line = html.unescape(line).strip()
    if "\xa0" in line:  # from web copies and &nbsp;: a plain space reads the same
        line = line.replace("\xa0", " ")
    if len(line) <= 12 and _PAGE_NUMBER_RE.match(line):
        return ""
    return line


def _script_digits(match: re.Match[str]) -> str:
    content = match.group(2)
    table = _SUPERSCRIPT if match.group(1).lower() == "sup" else _SUBSCRIPT
    converted = content.translate(table)
    # Only when every character has a super/subscript form; else the plain text reads best.
    return converted if all(a != b for a, b in zip(content, converted, strict=True)) else content


def _ends_paragraph(text: str) -> bool:
    return text[-1] in _PARA_END


def _is_enum_heading(text: str) -> bool:
    return (
        len(text) <= 40
        and bool(_ENUM_HEADING_RE.match(text))
        and not _HEADING_PUNCT_RE.search(text)
    )


def _join_paragraphs(body: list[tuple[int, str, bool]]) -> list[tuple[int, str]]:
    """Rejoin paragraphs split mid-sentence: a line not ending a sentence runs on."""
    paras: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0

    def flush() -> None:
        if parts:
            paras.append((start, "".join(parts)))
            parts.clear()

    for lineno, text, is_heading in body:
        if is_heading:
            flush()
            paras.append((lineno, text))
            continue
        if parts and not (
            _ends_paragraph(parts[-1])
            or _LEAD_RE.match(text)
            or (len(parts) == 1 and _is_enum_heading(parts[0]))
        ):
            if (
                parts[-1][-1].isascii()
                and parts[-1][-1].isalpha()
                and text[0].isascii()
                and (text[0].isalpha())
            ):
                parts.append(" ")  # "Apple" + "Inc": Latin words keep their space
            parts.append(text)
            continue
        flush()
        parts.append(text)
        start = lineno
    flush()
    return paras


def _has_zone_line_shape(text: str) -> bool:
    """Short, without sentence punctuation, not a lead (the caller checks a title follows)."""
    return len(text) <= 40 and not _ZONE_LINE_PUNCT_RE.search(text) and not _LEAD_RE.match(text)


def _could_be_untagged_title(items: list[tuple[int, str]], kinds: list[int], i: int) -> bool:
    text = items[i][1]
    if len(text) > 60 or "。" in text or _ends_paragraph(text) or _LEAD_RE.match(text):
        return False
    if is_whole_byline(text):
        return False
    if i == 0:
        return True
    prev_kind, prev = kinds[i - 1], items[i - 1][1]
    if prev_kind in (_TITLE, _SUBTITLE):
        return False
    # An unfinished long paragraph before it means this line is that paragraph's end.
    return prev_kind != _TEXT or _ends_paragraph(prev) or len(prev) <= 40


def _classify(
    items: list[tuple[int, str]], source: str, problems: list[SourceProblem]
) -> list[int]:
    kinds = []
    for _, text in items:
        if _SECTION_RE.match(text):
            kinds.append(_SECTION)
        elif (m := _TITLE_RE.match(text)) and m.group(2):
            kinds.append(_TITLE)
        else:
            kinds.append(_TEXT)
    n = len(items)
    for i in range(n - 1):
        nxt = items[i + 1][1]
        if (
            kinds[i] == _TITLE
            and kinds[i + 1] == _TEXT
            and len(nxt) <= 80
            and _SUBTITLE_RE.match(nxt)
        ):
            kinds[i + 1] = _SUBTITLE
    for i in range(n - 1):
        before_lead = kinds[i + 1] == _TEXT and _LEAD_RE.match(items[i + 1][1])
        if kinds[i] == _TEXT and before_lead and _could_be_untagged_title(items, kinds, i):
            kinds[i] = _TITLE
            message = f"«{items[i][1]}» taken as a title (no ## marker; it precedes 本刊讯)"
            problems.append(SourceProblem(source, items[i][0], message))
    for i in range(n - 1):
        if kinds[i] == _TEXT and kinds[i + 1] == _TITLE and _has_zone_line_shape(items[i][1]):
            text = items[i][1]
            if is_credit_line(text):
                pass  # a byline on its own line (an outlet too: 晋中日报) ends the article above
            elif is_person_line(text) or has_place_evidence(text):
                kinds[i] = _ZONE
            elif is_whole_byline(text):
                pass  # a bare name that is no place: the byline of the article above
            else:
                kinds[i] = _OTHER  # a column header such as 工作动态: no zone
                problems.append(
                    SourceProblem(
                        source,
                        items[i][0],
                        f"«{text}» before a title names no place; not used as a zone",
                    )
                )
    return kinds


def _title_text(text: str) -> str:
    match = _TITLE_RE.match(text)
    return match.group(2) if match and match.group(2) else text


def _article_id(issue: str, title: str, seen: Counter[str]) -> str:
    digest = hashlib.sha256(re.sub(r"\s+", "", title).encode("utf-8")).hexdigest()[:8]
    base = f"{issue}/{digest}"
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def _issue_date(issue: str) -> str:
    match = re.search(r"((?:19|20)\d\d)[-_.年]?(0[1-9]|1[0-2])(?!\d)", issue)
    return f"{match.group(1)}-{match.group(2)}" if match else ""


def parse_bulletin(
    text: str, issue: str, source: str = ""
) -> tuple[list[Article], list[SourceProblem]]:
    """Split a bulletin issue into articles; problems are warnings, never fatal."""
    where = source or issue
    problems: list[SourceProblem] = []
    text = ZERO_WIDTH_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    items = [
        (i, line) for i, raw in enumerate(text.split("\n"), start=1) if (line := _clean_line(raw))
    ]
    if not items:
        return [], [SourceProblem(where, 0, "no text")]
    kinds = _classify(items, where, problems)

    drafts: list[_Draft] = []
    preamble: list[int] = []
    pending_zone: tuple[int, str] | None = None
    column_header = False
    if _TITLE not in kinds:
        lineno, first = items[0]
        problems.append(
            SourceProblem(
                where,
                lineno,
                "no titles (## or #) found: the whole file "
                "is read as one article titled by its first line",
            )
        )
        drafts.append(_Draft(_title_text(first), lineno, None))
        items, kinds = items[1:], kinds[1:]
    for (lineno, line), kind in zip(items, kinds, strict=True):
        if kind == _ZONE:
            pending_zone = (lineno, line)
        elif kind == _TITLE:
            drafts.append(_Draft(_title_text(line), lineno, pending_zone, column_header))
            pending_zone, column_header = None, False
        elif kind == _OTHER:
            column_header = True
        elif not drafts:
            preamble.append(lineno)
        elif kind == _SUBTITLE:
            drafts[-1].subtitle = _SUBTITLE_RE.match(line).group(1).strip()
        elif kind == _SECTION:
            drafts[-1].body.append((lineno, _SECTION_RE.match(line).group(1), True))
        else:
            drafts[-1].body.append((lineno, line, False))
    if preamble:
        problems.append(
            SourceProblem(
                where, preamble[0], f"{len(preamble)} line(s) before the first title ignored"
            )
        )

    articles: list[Article] = []
    seen: Counter[str] = Counter()
    section = ""
    date = _issue_date(issue)
    for draft in drafts:
        if draft.new_section:
            section = ""
        paras, byline = extract_bylines(_join_paragraphs(draft.body))
        lead = paras[0][1] if paras else ""
        own = draft.own_zone[1] if draft.own_zone else ""
        zone, section, zone_problem = resolve_zone(own, draft.subtitle, draft.title, lead, section)
        line = draft.own_zone[0] if draft.own_zone else draft.title_line
        label = f"article «{draft.title}»"
        if not paras:
            problems.append(SourceProblem(where, line, f"{label} has no body text; skipped"))
            continue
        if zone_problem:
            problems.append(SourceProblem(where, line, f"{label}: {zone_problem}"))
        if byline is None:
            problems.append(SourceProblem(where, line, f"{label}: no byline found"))
        articles.append(
            Article(
                article_id=_article_id(issue, draft.title, seen),
                issue=issue,
                title=draft.title,
                text="\n".join(p for _, p in paras),
                zone=zone,
                subtitle=draft.subtitle,
                byline=byline.printed if byline else "",
                byline_names=byline.names if byline else (),
                date=date,
                source=source,
                line=line,
            )
        )
    problems.sort(key=lambda problem: problem.line)  # stable: file order, whole-file ones first
    _LOG.debug("%s: %d articles, %d problems", where, len(articles), len(problems))
    return articles, problems
