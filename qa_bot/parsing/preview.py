"""What `ingest` would make of some files, without touching an index: for `qa-bot parse`.

Each file is read and parsed exactly as ingest does (`load_file`); its warnings are attached to
the article they concern (by line: from the article's first line to the next article's), the
rest stay with the file. A refused file carries its one-line refusal instead of articles.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qa_bot.parsing.loading import expand_paths, load_file
from qa_bot.parsing.reading import InputError
from qa_bot.records import Article, SourceProblem


@dataclass(frozen=True)
class ParsedFile:
    path: Path
    articles: list[Article] = field(default_factory=list)
    warnings: list[list[SourceProblem]] = field(default_factory=list)  # one list per article
    file_warnings: list[SourceProblem] = field(default_factory=list)
    refusal: SourceProblem | None = None


def preview(paths: Iterable[Path]) -> tuple[list[ParsedFile], list[Path]]:
    """Every file (folders expanded as ingest does) parsed; and the files a folder held that
    are no issue."""
    skipped: list[Path] = []
    parsed = [_parse_one(path) for path in expand_paths(paths, skipped)]
    return parsed, skipped


def _parse_one(path: Path) -> ParsedFile:
    try:
        articles, problems = load_file(path)
    except InputError as exc:
        return ParsedFile(path, refusal=exc.problem)
    except OSError as exc:
        return ParsedFile(path, refusal=SourceProblem(str(path), 0, f"cannot read: {exc}"))
    starts = [article.line for article in articles]
    warnings: list[list[SourceProblem]] = [[] for _ in articles]
    file_warnings = []
    for problem in problems:
        index = bisect.bisect_right(starts, problem.line) - 1
        if problem.line and index >= 0:
            # "article «title»: no byline found" → "no byline found": the row names the article
            prefix = f"article «{articles[index].title}»"
            message = problem.message.removeprefix(prefix).removeprefix(":").strip()
            warnings[index].append(SourceProblem(problem.source, problem.line, message))
        else:
            file_warnings.append(problem)
    return ParsedFile(path, articles, warnings, file_warnings)


def article_rows(files: list[ParsedFile]) -> list[dict]:
    """One JSON-ready row per article: file, issue, title, zone, byline (as printed),
    byline_names, paragraphs, warnings and where it starts."""
    return [
        {
            "file": str(parsed.path),
            "issue": article.issue,
            "article_id": article.article_id,
            "line": article.line,
            "zone": article.zone,
            "title": article.title,
            "subtitle": article.subtitle,
            "byline": article.byline,
            "byline_names": list(article.byline_names),
            "date": article.date,
            "paragraphs": len(article.paragraphs),
            "characters": len(article.text),
            "warnings": [problem.message for problem in warnings],
        }
        for parsed in files
        for article, warnings in zip(parsed.articles, parsed.warnings, strict=True)
    ]
