"""PDF issues (a text layer, as laid out for print) to bulletin text.

pdfplumber (MIT, on pdfminer.six) gives every character with its box and font size. From them:

1. lines: characters sharing a baseline band; a wide gap splits a line into column segments;
   small raised digits become superscripts (m² stays m²);
2. running headers and footers: text at the top or bottom of a page that repeats on other
   pages (digits aside), and page numbers, are dropped;
3. reading order: a segment crossing the page's middle spans the columns and cuts the page
   into bands; inside a band the left column is read before the right one;
4. paragraphs: a line starts one when it is indented, or when the line before it stopped
   short of the column's right edge; so a paragraph runs on across columns and pages;
5. titles: lines set larger than the body text become `## title`.

The result is the same Markdown-ish text a plain-text issue has, for the bulletin parser.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from qa_bot.parsing.formats import kickers_as_lines
from qa_bot.parsing.reading import InputError
from qa_bot.records import SourceProblem

_LOG = logging.getLogger(__name__)

MAX_PDF_BYTES = 200 * 1024 * 1024
_PAGE_NUMBER_RE = re.compile(r"^[-—–－·\s]*(?:第\s*)?\d{1,4}\s*(?:页|/\s*\d{1,4})?[-—–－·\s]*$")
_EDGE_SHARE = 0.1  # the top and bottom tenth of a page is where running heads and feet live
_TEXT_HINT = "or export the issue from the layout program as text (UTF-8) and ingest that file"


@dataclass
class _Segment:
    """A run of characters on one line of one column."""

    page: int
    x0: float
    x1: float
    top: float
    bottom: float
    size: float
    text: str
    column: str = ""  # "left", "right" or "span"


def pdf_to_bulletin(path: Path) -> tuple[str, list[SourceProblem]]:
    """The issue's text, one paragraph a line, titles marked `## `; refusals as InputError."""
    source = str(path)
    if path.stat().st_size > MAX_PDF_BYTES:
        raise InputError(
            SourceProblem(source, 0, f"PDF larger than {MAX_PDF_BYTES >> 20} MB; split the issue")
        )
    pages = _read_pages(path, source)
    if not any(pages):
        raise InputError(
            SourceProblem(
                source,
                0,
                "PDF without a text layer (a scan?): run OCR on it (e.g. ocrmypdf) first, "
                + _TEXT_HINT,
            )
        )
    unmapped = sum(s.text.count("(cid:") for page in pages for s in page)
    if unmapped > 0.1 * sum(len(s.text) for page in pages for s in page) / 6:
        raise InputError(
            SourceProblem(
                source,
                0,
                "the PDF's fonts do not say which characters they draw (no ToUnicode map): "
                "re-export it with fonts embedded as Unicode, " + _TEXT_HINT,
            )
        )
    _drop_running_heads(pages)
    body_size = Counter(round(s.size, 1) for page in pages for s in page).most_common(1)[0][0]
    ordered = [s for page in pages for s in _reading_order(page)]
    return _to_text(ordered, body_size), []


def _read_pages(path: Path, source: str) -> list[list[_Segment]]:
    import pdfplumber
    from pdfminer.pdfdocument import PDFPasswordIncorrect

    try:
        with pdfplumber.open(path) as pdf:
            return [_segments(index, page) for index, page in enumerate(pdf.pages)]
    except Exception as exc:  # pdfminer raises many kinds on damaged files; all mean the same
        cause = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
        if isinstance(cause, PDFPasswordIncorrect) or "encrypt" in str(cause).lower():
            message = "encrypted PDF: save a copy without a password, " + _TEXT_HINT
        else:
            message = f"damaged PDF ({type(cause).__name__}): re-export it, " + _TEXT_HINT
        raise InputError(SourceProblem(source, 0, message)) from exc


def _segments(index: int, page) -> list[_Segment]:
    """Characters → lines → column segments, with the page's middle deciding the column."""
    visible = (c for c in page.chars if c["text"].strip() or c["text"] == " ")
    chars = sorted(
        (c for c in visible if c.get("upright", True)), key=lambda c: (c["top"], c["x0"])
    )
    lines: list[list[dict]] = []
    for char in chars:
        for line in reversed(lines[-3:]):
            if _same_line(line, char):
                line.append(char)
                break
        else:
            lines.append([char])
    middle = float(page.width) / 2
    segments = []
    for line in lines:
        for run in _split_runs(sorted(line, key=lambda c: c["x0"])):
            segment = _segment(index, run)
            if segment.text.strip():
                segment.column = (
                    "left" if segment.x1 <= middle + 2 else "right" if segment.x0 >= middle - 2
                    else "span"
                )
                segments.append(segment)
    sides = Counter(s.column for s in segments)
    if min(sides["left"], sides["right"]) < 3:  # one column: short lines are no column of their own
        for segment in segments:
            segment.column = "span"
    height = float(page.height)
    for segment in segments:  # positions as shares of the page, for running-head detection
        segment.top, segment.bottom = segment.top / height, segment.bottom / height
    return segments


def _same_line(line: list[dict], char: dict) -> bool:
    first = line[0]
    overlap = min(first["bottom"], char["bottom"]) - max(first["top"], char["top"])
    return overlap > 0.5 * min(first["bottom"] - first["top"], char["bottom"] - char["top"])


def _split_runs(line: list[dict]) -> list[list[dict]]:
    """Split where the gap between characters is wider than one and a half of the smaller one
    (a column gutter): spaces and justified text leave less than one."""
    runs = [[line[0]]]
    for previous, char in itertools.pairwise(line):
        if char["x0"] - previous["x1"] > 1.5 * min(previous["size"], char["size"]):
            runs.append([])
        runs[-1].append(char)
    return runs


def _segment(page: int, run: list[dict]) -> _Segment:
    size = Counter(round(c["size"], 1) for c in run if c["text"].strip()).most_common(1)
    body = size[0][0] if size else run[0]["size"]
    baseline = max(c["bottom"] for c in run if abs(c["size"] - body) < 0.5) if size else 0
    parts: list[str] = []
    previous = None
    for char in run:
        text = char["text"]
        if char["size"] < 0.8 * body and char["bottom"] < baseline - 0.15 * body:
            # A small raised character: marked up as the plain-text issue has it (m<sup>2</sup>),
            # the bulletin parser turns it into m².
            if parts and parts[-1].endswith("</sup>"):
                parts[-1] = parts[-1].removesuffix("</sup>")
                text += "</sup>"
            else:
                text = f"<sup>{text}</sup>"
        elif previous is not None and text != " " and parts and parts[-1] != " " and (
            char["x0"] - previous["x1"] > 0.25 * body
        ):
            parts.append(" ")  # a space the PDF shows as a gap, not as a character
        parts.append(text)
        previous = char
    return _Segment(
        page,
        min(c["x0"] for c in run),
        max(c["x1"] for c in run),
        min(c["top"] for c in run),
        max(c["bottom"] for c in run),
        body,
        "".join(parts).strip(),
    )


def _drop_running_heads(pages: list[list[_Segment]]) -> None:
    """Remove page numbers and text repeated at the top or bottom of pages."""

    def key(segment: _Segment) -> str:
        return re.sub(r"\d+", "#", segment.text.replace(" ", ""))

    def at_edge(segment: _Segment) -> bool:
        return segment.top < _EDGE_SHARE or segment.bottom > 1 - _EDGE_SHARE

    # How many pages show each edge text (once a page).
    seen = Counter(k for page in pages for k in {key(s) for s in page if at_edge(s)})
    for page in pages:
        page[:] = [
            s
            for s in page
            if not (
                at_edge(s)
                and (_PAGE_NUMBER_RE.match(s.text) or (len(pages) > 1 and seen[key(s)] > 1))
            )
        ]


def _reading_order(page: list[_Segment]) -> list[_Segment]:
    """Bands between segments that span the columns; in a band, the left column first."""
    ordered: list[_Segment] = []
    band: list[_Segment] = []

    def flush() -> None:
        ordered.extend(sorted(band, key=lambda s: (s.column == "right", s.top)))
        band.clear()

    for segment in sorted(page, key=lambda s: s.top):
        if segment.column == "span":
            flush()
            ordered.append(segment)
        else:
            band.append(segment)
    flush()
    return ordered


def _to_text(segments: list[_Segment], body_size: float) -> str:
    """Paragraphs from lines: indented or after a short line starts one; titles by size."""
    edges = _column_edges(segments, body_size)
    blocks: list[str] = []
    lines: list[str] = []
    mark = ""  # "## " for a title, "### " for a heading inside an article, "" for a paragraph
    ended = True

    def flush() -> None:
        if lines:
            blocks.append(mark + (_join(lines) if not mark else "".join(lines)))
            lines.clear()

    for segment in segments:
        left, right = edges[segment.column]
        # Larger than the body: a title (or, a little larger, a heading); its lines join.
        size_mark = (
            "## " if segment.size > body_size + 2.5
            else "### " if segment.size > body_size + 1
            else ""
        )
        indented = segment.x0 > left + 0.8 * segment.size
        if size_mark != mark or (not mark and (ended or indented)):
            flush()
        mark = size_mark
        lines.append(segment.text)
        ended = bool(mark) or segment.x1 < right - 1.5 * segment.size
    flush()
    return "\n\n".join(kickers_as_lines(blocks)) + "\n"


def _column_edges(
    segments: list[_Segment], body_size: float
) -> dict[str, tuple[float, float]]:
    """Left and right edge of each column, over the whole issue (the layout repeats on every
    page; one page may hold only one-line, indented paragraphs): the leftmost start of any
    line, the rightmost end of a body line."""
    edges: dict[str, tuple[float, float]] = {}
    for column in {s.column for s in segments}:
        group = [s for s in segments if s.column == column]
        body = [s for s in group if abs(s.size - body_size) <= 1] or group
        edges[column] = (min(s.x0 for s in group), max(s.x1 for s in body))
    return edges


def _join(lines: list[str]) -> str:
    """Wrapped lines of a paragraph: Chinese runs on; Latin words keep their space."""
    text = lines[0]
    for line in lines[1:]:
        words = text[-1:].isascii() and text[-1:].isalpha() and line[:1].isascii()
        text += (" " if words and line[:1].isalpha() else "") + line
    return text
