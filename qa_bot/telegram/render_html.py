"""Answers and articles as Telegram HTML, and splitting long HTML into valid messages.

Everything that comes from the corpus or the user goes through `esc()`; the only tags are the
ones written here (<b>, <i>), so every message is valid Telegram HTML. `split_html()` cuts
below Telegram's 4096-character limit, never inside a tag or an entity, and closes and reopens
the tags that are open at the cut so each part stands on its own.
"""

from __future__ import annotations

import html
import re
from collections import deque

from qa_bot.records import Answer, Article, Hit
from qa_bot.render import (
    BROWSE_SHOWN,
    ONLY_ONE_RELEVANT,
    PASSAGE_PREVIEW_CHARS,
    citation,
    citation_without_title,
)

MAX_MESSAGE_CHARS = 4096
# Tags Telegram's HTML parse mode accepts (https://core.telegram.org/bots/api#html-style).
TELEGRAM_TAGS = frozenset({
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote",
})

_TOKEN = re.compile(r"<[^>]*>|&#?[A-Za-z0-9]+;|[^<&]", re.S)
_TAG_NAME = re.compile(r"</?\s*([A-Za-z][\w-]*)")
# Where a cut reads naturally: after a line, then after a sentence, then after a comma.
_BREAK_AFTER = {
    "\n": 3, "。": 2, "！": 2, "？": 2, "；": 2, ".": 2, "!": 2, "?": 2, "，": 1, "、": 1, " ": 1,
}


def esc(text: str) -> str:
    """Escape text for Telegram HTML (quotes need no escaping outside attributes)."""
    return html.escape(text or "", quote=False)


def highlight(text: str, span: tuple[int, int] | None) -> str:
    """`text` escaped, with the key span in <b>."""
    if not span or not (0 <= span[0] < span[1] <= len(text)):
        return esc(text)
    start, end = span
    return f"{esc(text[:start])}<b>{esc(text[start:end])}</b>{esc(text[end:])}"


def preview(text: str, limit: int = PASSAGE_PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // max(per_page, 1)))


def page_bounds(total: int, page: int, per_page: int) -> tuple[int, int]:
    start = min(max(page, 0) * per_page, max(total - 1, 0))
    start -= start % per_page
    return start, min(total, start + per_page)


def answer_html(answer: Answer, page: int = 0, per_page: int = 3) -> str:
    """The answer sentence (key span bold) with its source, then one page of passages."""
    lines: list[str] = []
    if answer.understood_as:
        lines.append(f"<i>理解为：{esc(answer.understood_as)}</i>")
    if answer.browse:
        count = len(answer.browse)
        lines.append(f"📚 “{esc(answer.question)}”的文章（共 {count} 篇，最新的在前）：")
        for number, article in enumerate(answer.browse[:BROWSE_SHOWN], start=1):
            lines.append(f"{number}. {esc(article.title)} — "
                         f"<i>{esc(citation_without_title(article))}</i>")
        return "\n".join(lines)
    if answer.items:
        # A list across articles: the zones, then each one's sentence with its citation.
        lines.append("💡 " + "、".join(f"<b>{esc(item.chunk.zone)}</b>" for item in answer.items))
        for number, item in enumerate(answer.items, start=1):
            lines.append(f"{number}. " + highlight(item.text, item.span))
            lines.append(f"—— <i>{esc(citation(item.chunk))}</i>")
    elif answer.sentence is not None:
        sentence = answer.sentence
        lines.append("💡 " + highlight(sentence.text, sentence.span))
        lines.append(f"—— <i>{esc(citation(sentence.chunk))}</i>")
    else:
        reason = f"（{esc(answer.declined_reason)}）" if answer.declined_reason else ""
        lines.append(f"🤔 没有找到能回答这个问题的内容{reason}。")
    if answer.passages:
        lines.append("")
        lines.extend(passages_html(answer.passages, page, per_page))
    return "\n".join(lines)


def passages_html(passages: list[Hit], page: int, per_page: int) -> list[str]:
    start, end = page_bounds(len(passages), page, per_page)
    lines = [f"相关段落{ONLY_ONE_RELEVANT}：" if len(passages) == 1
             else f"相关段落（{start + 1}–{end} / {len(passages)}）："]
    for number, hit in enumerate(passages[start:end], start=start + 1):
        lines.append(f"[{number}] <i>{esc(citation(hit.chunk))}</i>")
        lines.append(esc(preview(hit.chunk.text)))
    return lines


def article_html(article: Article) -> str:
    lines = [f"<b>{esc(article.title)}</b>"]
    if article.subtitle:
        lines.append("——" + esc(article.subtitle))
    lines.append(f"<i>{esc(citation(article))}</i>")
    lines.append("")
    lines.extend(esc(paragraph) for paragraph in article.paragraphs)
    if article.byline:
        lines.append(f"（{esc(article.byline)}）")
    return "\n".join(lines)


# -- splitting -----------------------------------------------------------------------------------
def utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def visible_text(fragment: str) -> str:
    """What the user sees of an HTML fragment: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", fragment))


def _closing(stack: list[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _opening(stack: list[tuple[str, str]]) -> str:
    return "".join(tag for _, tag in stack)


def _apply(stack: list[tuple[str, str]], token: str) -> list[tuple[str, str]]:
    """The open tags after `token`."""
    if not token.startswith("<"):
        return stack
    name = _TAG_NAME.match(token).group(1).lower()
    if token.startswith("</"):
        return stack[:-1] if stack and stack[-1][0] == name else stack
    return [*stack, (name, token)]


def split_html(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Cut well-formed Telegram HTML into parts of at most `limit` UTF-16 units.

    Cuts fall between tokens (a tag, an entity such as &amp;, or one character), preferably
    after a line, a sentence or a comma in the second half of a part. Tags open at a cut are
    closed at the end of the part and reopened at the start of the next, so every part is valid
    on its own. Parts with nothing visible are dropped (Telegram refuses empty messages).
    """
    if utf16_len(text) <= limit:
        return [text] if visible_text(text).strip() else []
    parts: list[str] = []
    pending = deque(_TOKEN.findall(text))
    opened: list[tuple[str, str]] = []  # tags reopened at the start of the current part
    stack: list[tuple[str, str]] = []  # open tags now: (name, opening tag as written)
    tokens: list[str] = []  # the current part after the reopened tags
    stacks: list[list[tuple[str, str]]] = []  # open tags after each token
    sizes: list[int] = []  # size of the part after each token
    shown: list[bool] = []  # whether the part shows anything up to each token
    breaks: list[tuple[int, int]] = []  # (tokens before the break, strength)

    while pending:
        token = pending.popleft()
        is_text = not token.startswith("<")
        if is_text and token.isspace() and not tokens:
            continue  # a part never starts with the whitespace it was cut at
        after = _apply(stack, token)
        size = sizes[-1] if sizes else utf16_len(_opening(opened))
        overflow = size + utf16_len(token) + utf16_len(_closing(after)) > limit
        if overflow and tokens and not shown[-1]:
            # Only invisible markup so far: keep the tags still open, drop the closed ones.
            pending.appendleft(token)
            opened = list(stack)
            tokens.clear(), stacks.clear(), sizes.clear(), shown.clear(), breaks.clear()
            continue
        if overflow and shown and shown[-1]:
            chosen, best = len(tokens), 0
            for index, strength in breaks:
                if shown[index - 1] and sizes[index - 1] * 2 >= size and strength >= best:
                    chosen, best = index, strength
            at_cut = stacks[chosen - 1]
            body = "".join(tokens[:chosen])
            parts.append(_opening(opened) + (body if at_cut else body.rstrip()) + _closing(at_cut))
            pending.appendleft(token)
            pending.extendleft(reversed(tokens[chosen:]))
            opened, stack = list(at_cut), list(at_cut)
            tokens.clear(), stacks.clear(), sizes.clear(), shown.clear(), breaks.clear()
            continue
        stack = after
        tokens.append(token)
        stacks.append(after)
        sizes.append(size + utf16_len(token))
        shown.append(bool(shown and shown[-1]) or (is_text and not token.isspace()))
        strength = _BREAK_AFTER.get(token, 0)
        if strength:
            breaks.append((len(tokens), strength))
    final = _opening(opened) + "".join(tokens) + _closing(stack)
    if visible_text(final).strip():
        parts.append(final)
    return parts
