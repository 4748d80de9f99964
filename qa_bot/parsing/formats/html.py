"""Web pages (a saved article or WeChat post, or a whole issue as a page) to articles.

selectolax (MIT, the lexbor HTML parser) builds the tree. The main text is the page's
`<article>` (or WeChat's `#js_content`, or the block holding most paragraph text), without
navigation, headers, footers, scripts and forms. Its headings, paragraphs and list items
become bulletin text for the bulletin parser; a page with a single article and no heading
of its own gets the page's title (og:title, <h1>, <title>) as its title. The page's author
becomes the byline when the text has none, and its date the article's date.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from qa_bot.parsing.bulletin import parse_bulletin
from qa_bot.parsing.formats import kickers_as_lines
from qa_bot.parsing.reading import InputError, decode
from qa_bot.records import Article, SourceProblem

MAX_HTML_BYTES = 20 * 1024 * 1024
_NOISE = "script, style, noscript, nav, header, footer, aside, form, iframe, svg, button, select"
_BLOCKS = "h1, h2, h3, h4, h5, h6, p, li, blockquote, pre, td"
_MAIN_SELECTORS = ("#js_content", "article", "main", "[itemprop=articleBody]", ".article",
                   ".content", "#content")
_DATE_RE = re.compile(r"((?:19|20)\d\d)[-/.年](\d{1,2})[-/.月](\d{1,2})")
_HAN_RE = re.compile("[\u3400-\u9fff]")
_MIN_ARTICLE_HAN = 10  # less than this is a menu or a link list, not an article
_SAVE_HINT = (
    "save the article page itself (not a list or home page), or copy its text into a .txt file"
)


def html_to_bulletin(path: Path) -> tuple[list[Article], list[SourceProblem]]:
    source = str(path)
    data = path.read_bytes()
    if len(data) > MAX_HTML_BYTES:
        raise InputError(SourceProblem(source, 0, f"page larger than {MAX_HTML_BYTES >> 20} MB"))
    text, problems = decode(data, source)
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    tree = HTMLParser(text)
    page_title = _page_title(tree)
    author = _meta(tree, "author", "article:author", "byline") or _text_of(
        tree, "#js_name, .author, .rich_media_meta_text, [rel=author]"
    )
    date = _page_date(tree)
    for node in tree.css(_NOISE):
        node.decompose()
    main = _main_block(tree)
    blocks = _blocks(main) if main is not None else []
    if sum(len(_HAN_RE.findall(b)) for b in blocks if not b.startswith("#")) < _MIN_ARTICLE_HAN:
        raise InputError(SourceProblem(source, 0, "no article text found in the page; "
                                       + _SAVE_HINT))
    if not any(b.startswith("#") for b in blocks):
        if not page_title:
            raise InputError(SourceProblem(source, 0, "the page has no title or heading; "
                                           + _SAVE_HINT))
        blocks.insert(0, "## " + page_title)
    text = "\n\n".join(kickers_as_lines(blocks)) + "\n"
    articles, more = parse_bulletin(text, path.stem, source)
    if len(articles) == 1:
        article = articles[0]
        if not article.byline and author:
            article = dataclasses.replace(article, byline=author, byline_names=_names(author))
            more = [p for p in more if not p.message.endswith("no byline found")]
        if date:
            article = dataclasses.replace(article, date=date)
        articles = [article]
    return articles, problems + more


def _names(author: str) -> tuple[str, ...]:
    from qa_bot.parsing.bylines import parse_byline

    byline = parse_byline(author)
    return byline.names if byline is not None else ()


def _page_title(tree) -> str:
    title = _meta(tree, "og:title", "twitter:title") or _text_of(tree, "h1, .rich_media_title")
    if not title:
        title = _text_of(tree, "title")
        title = re.split(r"\s+[-_|–—]\s+", title)[0] if title else ""  # "标题 - 网站名"
    return title.strip()


def _page_date(tree) -> str:
    """YYYY-MM (as Article.date) from the page's metadata or a <time> element."""
    candidates = [
        _meta(tree, "article:published_time", "publishdate", "pubdate", "date", "dc.date"),
        *(node.attributes.get("datetime") or node.text() for node in tree.css("time")),
        _text_of(tree, "#publish_time, .date, .time, .pubtime"),
    ]
    for candidate in candidates:
        if candidate and (match := _DATE_RE.search(candidate)):
            return f"{match.group(1)}-{int(match.group(2)):02d}"
    return ""


def _meta(tree, *names: str) -> str:
    for name in names:
        for attribute in ("name", "property"):
            node = tree.css_first(f'meta[{attribute}="{name}"]')
            if node is not None and (content := (node.attributes.get("content") or "").strip()):
                return content
    return ""


def _text_of(tree, selector: str) -> str:
    node = tree.css_first(selector)
    return node.text(separator=" ", strip=True) if node is not None else ""


def _main_block(tree):
    for selector in _MAIN_SELECTORS:
        node = tree.css_first(selector)
        if node is not None and len(_HAN_RE.findall(node.text())) >= _MIN_ARTICLE_HAN:
            return node
    # No marked-up article: the element whose own paragraphs hold the most Chinese text.
    best, best_count = tree.body, 0
    for paragraph in tree.css("p"):
        parent = paragraph.parent
        if parent is None:
            continue
        count = sum(len(_HAN_RE.findall(p.text())) for p in parent.css("p"))
        if count > best_count:
            best, best_count = parent, count
    return best


def _blocks(main) -> list[str]:
    """One line per heading/paragraph, innermost blocks only (a <p> in an <li> counts once)."""
    for node in main.css("sup"):  # kept as markup: the bulletin parser makes m<sup>2</sup> m²
        node.replace_with(f"<sup>{node.text() or ''}</sup>")
    for node in main.css("br"):
        node.replace_with("\n")
    blocks: list[str] = []
    nodes = main.css(_BLOCKS) or [main]
    for node in nodes:
        if len(node.css(_BLOCKS)) > 1:  # lexbor's css() matches the node itself too
            continue  # its inner blocks are read on their own
        for line in node.text(separator="").split("\n"):
            line = line.strip()
            if not line:
                continue
            if node.tag in ("h1", "h2"):
                blocks.append("## " + line)
            elif node.tag in ("h3", "h4", "h5", "h6"):
                blocks.append("### " + line)
            else:
                blocks.append(line)
    return blocks
