"""Articles given as JSON: one {"id","title","text",…} object a line, or a JSON array of them."""

from __future__ import annotations

import json

from qa_bot.parsing.bylines import parse_byline
from qa_bot.parsing.reading import ZERO_WIDTH_RE, InputError
from qa_bot.records import Article, SourceProblem

JSONL_SUFFIXES = frozenset({".jsonl", ".json-lines", ".jsonlines", ".ndjson"})

def parse_jsonl(
    text: str, issue: str, source: str = ""
) -> tuple[list[Article], list[SourceProblem]]:
    """One {"id","title","text"} object a line; bad lines are reported and skipped."""
    where = source or issue
    problems: list[SourceProblem] = []
    articles: list[Article] = []
    seen: dict[str, int] = {}
    text = ZERO_WIDTH_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(
                SourceProblem(
                    where, lineno, f"invalid JSON: {exc.msg} (column {exc.colno}); line skipped"
                )
            )
            continue
        article = _article_from_row(row, issue, source, where, lineno, problems)
        if article is None:
            continue
        if article.article_id in seen:
            problems.append(
                SourceProblem(
                    where,
                    lineno,
                    f"duplicate id {article.article_id!r} "
                    f"(first on line {seen[article.article_id]}); skipped",
                )
            )
            continue
        seen[article.article_id] = lineno
        articles.append(article)
    return articles, problems


def _article_from_row(
    row: object, issue: str, source: str, where: str, lineno: int, problems: list[SourceProblem]
) -> Article | None:
    if not isinstance(row, dict):
        problems.append(SourceProblem(where, lineno, "not a JSON object; line skipped"))
        return None
    missing = [key for key in ("id", "title", "text") if key not in row]
    if missing:
        problems.append(
            SourceProblem(where, lineno, f"missing field(s) {', '.join(missing)}; line skipped")
        )
        return None
    article_id = row["id"]
    if (
        isinstance(article_id, bool)
        or not isinstance(article_id, str | int)
        or not str(article_id).strip()
    ):
        problems.append(
            SourceProblem(where, lineno, "field id must be a non-empty string; line skipped")
        )
        return None
    fields: dict[str, str] = {}
    for key in ("title", "text", "zone", "subtitle", "byline", "issue", "date"):
        value = row.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            if key in ("title", "text"):
                problems.append(
                    SourceProblem(where, lineno, f"field {key} must be a string; line skipped")
                )
                return None
            problems.append(SourceProblem(where, lineno, f"field {key} must be a string; ignored"))
            value = ""
        fields[key] = value.strip()
    # One paragraph a line, no empty paragraphs, as for bulletins.
    body = "\n".join(line.strip() for line in fields["text"].split("\n") if line.strip())
    if not body:
        problems.append(SourceProblem(where, lineno, "empty text; line skipped"))
        return None
    return Article(
        article_id=str(article_id).strip(),
        issue=fields["issue"] or issue,
        title=fields["title"],
        text=body,
        zone=fields["zone"],
        subtitle=fields["subtitle"],
        byline=fields["byline"],
        byline_names=_names_of(fields["byline"]),
        date=fields["date"],
        source=source,
        line=lineno,
    )


def parse_json_array(
    text: str, issue: str, source: str
) -> tuple[list[Article], list[SourceProblem]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(SourceProblem(source, exc.lineno, f"invalid JSON: {exc.msg}")) from exc
    if not isinstance(rows, list):
        raise InputError(SourceProblem(source, 0, "JSON file must hold an array of articles"))
    # Re-serialise one object a line so that both forms share a single code path.
    lines = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    articles, problems = parse_jsonl(lines, issue, source)
    problems = [SourceProblem(p.source, 0, f"item {p.line}: {p.message}") for p in problems]
    return articles, problems



def _names_of(byline: str) -> tuple[str, ...]:
    """People's names of a byline given as a field: parsed like a printed one, else as is."""
    if not byline:
        return ()
    parsed = parse_byline(byline)
    return parsed.names if parsed is not None else tuple(byline.split())
