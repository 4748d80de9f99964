"""One input file to articles: the format decides the reader, the bulletin parser does the rest."""

from __future__ import annotations

import logging
from pathlib import Path

from qa_bot.parsing.bulletin import parse_bulletin
from qa_bot.parsing.jsonl import JSONL_SUFFIXES, parse_json_array, parse_jsonl
from qa_bot.parsing.reading import InputError, read_text
from qa_bot.records import Article, SourceProblem

_LOG = logging.getLogger(__name__)


def load_file(path: Path) -> tuple[list[Article], list[SourceProblem]]:
    """Read and parse one input file: JSONL by extension, anything else as a bulletin."""
    path = Path(path)
    source = str(path)
    text, problems = read_text(path)
    suffix = path.suffix.lower()
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
