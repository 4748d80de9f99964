"""Word (.docx) issues to bulletin text: heading styles are titles, paragraphs are paragraphs.

python-docx (MIT) reads the document; before it does, the ZIP container is checked, so that a
damaged file or a ZIP bomb (a small file that inflates to gigabytes) is refused, not unpacked.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from qa_bot.parsing.formats import kickers_as_lines
from qa_bot.parsing.reading import InputError
from qa_bot.records import SourceProblem

# An issue is a few hundred kB of XML; these leave a wide margin and stop a ZIP bomb.
MAX_DOCX_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed size of one member; XML seldom passes 30
_HEADING_RE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)
_TEXT_HINT = "or save the issue from Word as plain text (UTF-8) and ingest that file"


def docx_to_bulletin(path: Path) -> tuple[str, list[SourceProblem]]:
    """The issue's text, `## ` before Title/Heading 1–2 paragraphs, `### ` before Heading 3+."""
    source = str(path)
    _check_container(path, source)
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx, lxml and zipfile each raise their own kinds
        raise InputError(
            SourceProblem(source, 0, f"damaged .docx ({type(exc).__name__}): re-save it, "
                          + _TEXT_HINT)
        ) from exc
    blocks: list[str] = []
    for paragraph in _paragraphs(document):
        text = _paragraph_text(paragraph).strip()
        if not text:
            continue
        blocks.append(_mark(paragraph.style.name if paragraph.style is not None else "") + text)
    if not blocks:
        raise InputError(SourceProblem(source, 0, "the .docx holds no text; " + _TEXT_HINT))
    return "\n\n".join(kickers_as_lines(blocks)) + "\n", []


def _paragraphs(document):
    """Body paragraphs in order, those inside layout tables included (each cell once)."""
    from docx.table import Table

    for item in document.iter_inner_content():
        if not isinstance(item, Table):
            yield item
            continue
        seen = set()
        for row in item.rows:
            for cell in row.cells:
                if cell._tc in seen:  # a merged cell is listed once per grid column
                    continue
                seen.add(cell._tc)
                yield from cell.paragraphs


def _paragraph_text(paragraph) -> str:
    """The paragraph's text, superscript runs marked up as the plain-text issue has them
    (m<sup>2</sup>; the bulletin parser turns it into m²)."""
    parts = []
    for item in paragraph.iter_inner_content():  # runs and hyperlinks, in order
        text = item.text
        if getattr(getattr(item, "font", None), "superscript", False):
            text = f"<sup>{text}</sup>"
        parts.append(text)
    return "".join(parts)


def _mark(style: str) -> str:
    if style.lower() == "title":
        return "## "
    match = _HEADING_RE.match(style.strip())
    if not match:
        return ""
    return "## " if int(match.group(1)) <= 2 else "### "


def _check_container(path: Path, source: str) -> None:
    if path.stat().st_size > MAX_DOCX_BYTES:
        raise InputError(
            SourceProblem(source, 0, f".docx larger than {MAX_DOCX_BYTES >> 20} MB; "
                          "split the issue, " + _TEXT_HINT)
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(
            SourceProblem(source, 0, "damaged .docx (not a readable ZIP archive): re-save it, "
                          + _TEXT_HINT)
        ) from exc
    if not any(m.filename == "word/document.xml" for m in members):
        raise InputError(
            SourceProblem(source, 0, "not a Word document (no word/document.xml in the ZIP); "
                          + _TEXT_HINT)
        )
    unpacked = sum(m.file_size for m in members)
    inflated = max((m.file_size / max(m.compress_size, 1) for m in members), default=0)
    if unpacked > MAX_UNPACKED_BYTES or (inflated > MAX_RATIO and unpacked > 1024 * 1024):
        raise InputError(
            SourceProblem(source, 0, f"refused: the .docx would unpack to {unpacked >> 20} MB "
                          "(a ZIP bomb?); " + _TEXT_HINT)
        )
