"""Bytes to text: encodings, byte-order marks, control characters; refusals that say what to do.

Only plain-text issues come through here; PDF, DOCX and HTML have their readers in `formats/`.
"""

from __future__ import annotations

import codecs
import itertools
import re
from pathlib import Path

from qa_bot.records import SourceProblem


class InputError(Exception):
    """An input that cannot be used at all; ``str()`` is ``"file:line: message"``."""

    def __init__(self, problem: SourceProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


ZERO_WIDTH_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LINE_BREAKS_RE = re.compile("[\f\v\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_ODD_CHAR_RE = re.compile("[\x80-\x9f\ue000-\uf8ff]")
_HTML_START_RE = re.compile(
    r"<(?:!doctype\s+html|html|\?xml|head|body|meta|div|p|table|h[1-6]|article|section)\b",
    re.IGNORECASE,
)
_HTML_TAG_RE = re.compile(
    r"</?(?:html|head|body|div|p|br|table|tr|td|span|h[1-6]|meta|script|style|li|ul|a)\b[^>]*>",
    re.IGNORECASE,
)
_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (a .docx/.xlsx document?)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.doc/.xls)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip archive"),
)
_EXPORT_HINT = "export or save it as plain text (UTF-8) and ingest that file"
# Formats that have their own reader: a file of this kind with another suffix is misnamed.
_RENAME_HINT = {
    "a PDF document": "name it .pdf to ingest it as a PDF issue, or " + _EXPORT_HINT,
    "a ZIP archive (a .docx/.xlsx document?)": "name a Word file .docx to ingest it, or "
    + _EXPORT_HINT,
}


def read_text(path: Path) -> tuple[str, list[SourceProblem]]:
    """Read a text file whatever its encoding; refuse what is not text, saying what to do."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(SourceProblem(source, 0, f"cannot read: {exc.strerror or exc}")) from exc
    text, problems = decode(data, source)
    return _normalise(text, source, problems), problems


def decode(data: bytes, source: str) -> tuple[str, list[SourceProblem]]:
    problems: list[SourceProblem] = []
    if not data.strip():
        raise InputError(SourceProblem(source, 0, "empty file: no text to ingest"))
    for magic, what in _MAGIC:
        if data.startswith(magic):
            hint = _RENAME_HINT.get(what, _EXPORT_HINT)
            message = f"not a text file: looks like {what}; {hint}"
            raise InputError(SourceProblem(source, 0, message))
    # UTF-32 before UTF-16: the UTF-32-LE byte-order mark starts with the UTF-16-LE one.
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    for bom, encoding in boms:
        if data.startswith(bom):
            try:
                return data.decode(encoding), problems
            except UnicodeDecodeError as exc:
                raise InputError(
                    SourceProblem(
                        source,
                        _line_of_offset(data, exc.start),
                        f"starts with a {encoding.upper()} byte-order mark but is not valid "
                        f"{encoding.upper()}; {_EXPORT_HINT}",
                    )
                ) from exc
    if b"\x00" in data:
        raise InputError(
            SourceProblem(
                source,
                _line_of_offset(data, data.index(b"\x00")),
                "contains NUL bytes: a binary file, or UTF-16/UTF-32 without a byte-order mark; "
                + _EXPORT_HINT,
            )
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = _line_of_offset(data, exc.start)
    else:
        return _plausible_or_raise(text, source), problems
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        message = "neither UTF-8 nor GB18030 text (binary, or another encoding); " + _EXPORT_HINT
        raise InputError(SourceProblem(source, _line_of_offset(data, exc.start), message)) from exc
    problems.append(
        SourceProblem(
            source,
            bad_line,
            "not UTF-8 (first bad byte on this line); decoded as GB18030/GBK — "
            "please re-save the file as UTF-8",
        )
    )
    return _plausible_or_raise(text, source), problems


def _plausible_or_raise(text: str, source: str) -> str:
    """Binary that happens to decode shows many control or private-use characters."""
    sample = text[:200_000]
    odd = len(_CONTROL_RE.findall(sample)) + len(_ODD_CHAR_RE.findall(sample))
    if odd > max(2, len(sample) // 100):
        message = f"does not read as text (binary?); {_EXPORT_HINT}"
        raise InputError(SourceProblem(source, 0, message))
    return text


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _normalise(text: str, source: str, problems: list[SourceProblem]) -> str:
    """Newlines to \\n, zero-width and BOM characters and stray control characters removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _LINE_BREAKS_RE.sub("\n", text)
    text = ZERO_WIDTH_RE.sub("", text)
    if _CONTROL_RE.search(text):
        count = len(_CONTROL_RE.findall(text))
        text = _CONTROL_RE.sub("", text)
        problems.append(SourceProblem(source, 0, f"removed {count} stray control character(s)"))
    if not text.strip():
        raise InputError(SourceProblem(source, 0, "empty file: only whitespace"))
    if _looks_like_html(text):
        raise InputError(
            SourceProblem(
                source,
                0,
                "looks like HTML, not plain text: name it .html to ingest it as a web page, "
                "or export the page as plain text (UTF-8) and ingest that file",
            )
        )
    return text


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:2000]
    if head.startswith(("{", "[")):  # JSON: markup inside strings is data
        return False
    if _HTML_START_RE.match(head):
        return True
    # The bulletin itself may contain <sup>; structural tags in numbers mean a web page.
    return sum(1 for _ in itertools.islice(_HTML_TAG_RE.finditer(text), 5)) >= 5

