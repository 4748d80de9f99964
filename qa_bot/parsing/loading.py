"""One input file to articles: the format decides the reader, the bulletin parser does the rest."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from qa_bot.parsing.bulletin import parse_bulletin
from qa_bot.parsing.jsonl import JSONL_SUFFIXES, parse_json_array, parse_jsonl
from qa_bot.parsing.reading import InputError, read_text
from qa_bot.records import Article, SourceProblem

_LOG = logging.getLogger(__name__)

_TEXT_SUFFIXES = frozenset({".txt", ".md"})
_DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx", ".html", ".htm"})
# What a folder given to ingest or parse is searched for (compared in lower case).
INPUT_SUFFIXES = _TEXT_SUFFIXES | JSONL_SUFFIXES | _DOCUMENT_SUFFIXES | {".json"}


def load_file(path: Path) -> tuple[list[Article], list[SourceProblem]]:
    """Read and parse one input file: by its suffix JSON(L), PDF, DOCX, HTML; else a bulletin."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix in _DOCUMENT_SUFFIXES:
        articles, problems = _load_document(path, suffix)
        more = problems
    else:
        text, problems = read_text(path)
        if suffix in JSONL_SUFFIXES:
            articles, more = parse_jsonl(text, path.stem, source)
        elif suffix == ".json" and text.lstrip().startswith("["):
            articles, more = parse_json_array(text, path.stem, source)
        elif suffix == ".json":
            articles, more = parse_jsonl(text, path.stem, source)
        else:
            articles, more = parse_bulletin(text, path.stem, source)
        problems.extend(more)
    if not articles:
        detail = f"; first problem: {more[0]}" if more else ""
        raise InputError(SourceProblem(source, 0, f"no articles found{detail}"))
    _LOG.info("%s: %d articles, %d problems", source, len(articles), len(problems))
    return articles, problems


def _load_document(path: Path, suffix: str) -> tuple[list[Article], list[SourceProblem]]:
    """PDF, DOCX, HTML: their reader gives bulletin text (whole or refused), then the parser."""
    source = str(path)
    try:
        if suffix == ".pdf":
            from qa_bot.parsing.formats.pdf import pdf_to_bulletin

            text, problems = pdf_to_bulletin(path)
        elif suffix == ".docx":
            from qa_bot.parsing.formats.docx import docx_to_bulletin

            text, problems = docx_to_bulletin(path)
        else:
            from qa_bot.parsing.formats.html import html_to_bulletin

            return html_to_bulletin(path)
    except OSError as exc:
        raise InputError(SourceProblem(source, 0, f"cannot read: {exc.strerror or exc}")) from exc
    articles, more = parse_bulletin(text, path.stem, source)
    return articles, problems + more


def expand_paths(paths: Iterable[Path], skipped: list[Path] | None = None) -> list[Path]:
    """Files as given; directories expand to their issue files (INPUT_SUFFIXES), sorted.

    Other files found in a directory are appended to `skipped` (hidden ones are not: .git,
    .DS_Store and the like are no one's issue).
    """
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in found.relative_to(path).parts):
                continue
            if found.suffix.lower() in INPUT_SUFFIXES:
                files.append(found)
            elif skipped is not None:
                skipped.append(found)
    return files
