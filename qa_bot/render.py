"""Answers as terminal text or JSON: what `qa-bot ask` and the REPL print."""

from __future__ import annotations

import json

from qa_bot.records import Answer, Article, Chunk, Hit

_BOLD_YELLOW = "\x1b[1;33m"
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
PASSAGE_PREVIEW_CHARS = 180
# Passages under an answer scoring below this share of the first are not shown: fused scores
# fall off a cliff after the relevant articles (1.04 → 0.21 for 广灵…再生金属企业).
# The default of [answer] passage_min_ratio.
PASSAGE_MIN_RATIO = 0.4
ONLY_ONE_RELEVANT = "（只有这一篇相关）"
BROWSE_SHOWN = 20  # articles listed for a zone or topic


def relevant_passages(passages: list[Hit], min_ratio: float = PASSAGE_MIN_RATIO) -> list[Hit]:
    """The passages worth showing under an answer: those within `min_ratio` of the first."""
    if not passages:
        return []
    floor = passages[0].score * min_ratio
    return [hit for hit in passages if hit.score >= floor]


def understood_line(answer: Answer) -> str:
    """How a follow-up was read, so a wrong reading is visible."""
    return f"理解为：{answer.understood_as}" if answer.understood_as else ""


def browse_lines(answer: Answer) -> list[str]:
    """The articles of a zone or on a topic, newest first, as numbered citation lines."""
    shown = answer.browse[:BROWSE_SHOWN]
    lines = [f"“{answer.question}”的文章（共 {len(answer.browse)} 篇，最新的在前）："]
    for number, article in enumerate(shown, start=1):
        lines.append(f"  {number}. {article.title} —— {citation_without_title(article)}")
    if len(answer.browse) > len(shown):
        lines.append(f"  …另有 {len(answer.browse) - len(shown)} 篇，请换个更具体的说法。")
    return lines


def citation_without_title(article: Article) -> str:
    return " · ".join(part for part in (article.zone, article.byline, article.issue) if part)


def citation(chunk: Chunk | Article) -> str:
    """zone · title · byline · issue, skipping empty fields."""
    return " · ".join(part for part in (chunk.zone, chunk.title, chunk.byline, chunk.issue) if part)


def highlight(text: str, span: tuple[int, int] | None, color: bool, marks=("【", "】")) -> str:
    if span is None:
        return text
    start, end = span
    left, right = (_BOLD_YELLOW, _RESET) if color else marks
    return f"{text[:start]}{left}{text[start:end]}{right}{text[end:]}"


def answer_text(
    answer: Answer, color: bool = False, passage_min_ratio: float = PASSAGE_MIN_RATIO
) -> str:
    lines = [understood_line(answer)] if answer.understood_as else []
    if answer.browse:
        return "\n".join(lines + browse_lines(answer))
    if answer.items:
        # A list across articles: the zones, then each one's sentence with its citation.
        zones = [highlight(item.chunk.zone, (0, len(item.chunk.zone)), color)
                 for item in answer.items]
        lines.append("答：" + "、".join(zones))
        for number, item in enumerate(answer.items, start=1):
            lines.append(f"  {number}. " + highlight(item.text, item.span, color))
            lines.append(f"     —— {citation(item.chunk)}")
    elif answer.sentence is not None:
        sentence = answer.sentence
        lines.append("答：" + highlight(sentence.text, sentence.span, color))
        lines.append(f"    —— {citation(sentence.chunk)}")
    else:
        lines.append(f"没有找到能回答这个问题的内容（{answer.declined_reason}）。")
        if answer.passages:
            lines.append("最接近的文章：")
            for hit in answer.passages:
                lines.append(f"  - {hit.chunk.title}（{hit.chunk.zone or '未注明开发区'}）")
        return "\n".join(lines)
    lines.append("")
    passages = relevant_passages(answer.passages, passage_min_ratio)
    lines.append("相关段落" + (ONLY_ONE_RELEVANT if len(passages) == 1 else "") + "：")
    for rank, hit in enumerate(passages, start=1):
        score = f"{hit.score:.4f}"
        head = f"[{rank}] {citation(hit.chunk)}  ({_DIM if color else ''}{score}"
        lines.append(head + (_RESET if color else "") + ")")
        preview = hit.chunk.text.replace("\n", " ")
        if len(preview) > PASSAGE_PREVIEW_CHARS:
            preview = preview[:PASSAGE_PREVIEW_CHARS] + "…"
        lines.append(f"    {preview}")
    return "\n".join(lines)


def answer_json(answer: Answer) -> str:
    return json.dumps(answer.to_dict(), ensure_ascii=False)


def article_text(article: Article) -> str:
    lines = [article.title]
    if article.subtitle:
        lines.append("——" + article.subtitle)
    lines.append(citation(article))
    lines.append("")
    lines.extend(article.paragraphs)
    if article.byline:
        lines.append(f"（{article.byline}）")
    return "\n".join(lines)
