"""Property-based tests (hypothesis) of the parser and the chunker: whatever the input, they
never crash, never lose text and never produce an empty chunk.

Fast (no model): the chunker counts tokens with `estimate_tokens`, the stand-in the product uses
when no tokenizer is given.
"""

from __future__ import annotations

import itertools
import os
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qa_bot.chinese import sentence_spans
from qa_bot.chunking import SentenceChunker, estimate_tokens
from qa_bot.parsing import InputError, load_file, parse_bulletin, parse_jsonl
from qa_bot.records import Article

# HYPOTHESIS_EXAMPLES=3000 searches deeper (about two minutes).
FAST = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RESERVED_TOKENS = 8  # qa_bot.chunking._RESERVED_TOKENS: room for <s>, </s> and the prompt

# -- strategies ----------------------------------------------------------------------------------

# Common characters that spell no zone suffix, role or person's title on their own.
HAN = (
    "的一是在不了有和人这中大为上个我以要他时来用们生到作地于出就分对成会可主年动同也"
    "能下过子说种面而方后多定行学法所民得十三之进着等部度家电力里如水化自二理起小物现"
    "实加量都两体制当使点从本去把性好应它合还因由其些然前外天四日那社义事平形相全表间"
    "样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意"
)
PUNCT_END = "。！？；…"
PUNCT_MID = "，、：“”（）《》"
ASCII = "abcXYZ0123456789 .,;!?%-"
WEIRD = "\t\u3000\xa0\u200b\ufeff\u2028\x0b\x0c\x1f\U0001f600\u0301<>&#"

sentence_text = st.text(alphabet=HAN + PUNCT_MID + ASCII, min_size=1, max_size=60)
sentence = st.builds(lambda body, end: body + end, sentence_text, st.sampled_from(PUNCT_END + "\n"))
any_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
mixed_text = st.text(alphabet=HAN + PUNCT_END + PUNCT_MID + ASCII + WEIRD + "\n", max_size=600)
paragraphish = st.lists(sentence, min_size=0, max_size=30).map("".join)


def non_space_positions(text: str) -> set[int]:
    return {i for i, ch in enumerate(text) if not ch.isspace()}


def make_article(text: str, title: str = "标题", zone: str = "侯马经济开发区") -> Article:
    return Article(article_id="t/1", issue="t", title=title, text=text, zone=zone, byline="王波")


# -- the chunker ---------------------------------------------------------------------------------


def check_chunks(article: Article, chunker: SentenceChunker) -> None:
    chunks = chunker.chunk(article)
    header = " ".join(part for part in (article.zone, article.title) if part)
    budget = max(
        chunker.max_tokens - RESERVED_TOKENS - estimate_tokens(header), chunker.max_tokens // 2
    )
    covered: set[int] = set()
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert chunk.text == article.text[chunk.start : chunk.end]
        assert chunk.text.strip(), "empty chunk"
        assert chunk.text == chunk.text.strip(), "chunk starts or ends with whitespace"
        assert estimate_tokens(chunk.text) <= budget
        if estimate_tokens(header) <= chunker.max_tokens // 2 - RESERVED_TOKENS:
            assert estimate_tokens(chunk.embed_text) + RESERVED_TOKENS <= chunker.max_tokens
        assert (chunk.article_id, chunk.issue, chunk.title, chunk.zone, chunk.byline) == (
            article.article_id, article.issue, article.title, article.zone, article.byline)
        covered.update(range(chunk.start, chunk.end))
    # In order: each chunk starts and ends after the one before (overlap allowed, no going back).
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start and before.end < after.end
        assert after.start <= before.end or not article.text[before.end : after.start].strip()
    missing = non_space_positions(article.text) - covered
    assert not missing, f"characters lost: {[article.text[i] for i in sorted(missing)][:20]}"
    if not article.text.strip():
        assert chunks == []


@FAST
@given(
    text=st.one_of(paragraphish, mixed_text, any_text),
    max_tokens=st.integers(min_value=32, max_value=300),
    overlap=st.integers(min_value=0, max_value=3),
)
@example(text="。" * 500, max_tokens=32, overlap=3)
@example(text="a" * 1000, max_tokens=32, overlap=0)
@example(text="，" * 700 + "。", max_tokens=40, overlap=1)
@example(text="\n\n  \u3000\n", max_tokens=64, overlap=1)
def test_chunker_never_loses_text_and_never_makes_an_empty_chunk(text, max_tokens, overlap):
    chunker = SentenceChunker(max_tokens=max_tokens, overlap_sentences=overlap)
    check_chunks(make_article(text), chunker)


@FAST
@given(
    text=paragraphish,
    title=st.text(alphabet=HAN, min_size=0, max_size=400),
    zone=st.sampled_from(["", "侯马经济开发区", "山西转型综合改革示范区" * 3]),
    max_tokens=st.integers(min_value=32, max_value=200),
)
def test_chunker_keeps_a_long_title_from_starving_the_body(text, title, zone, max_tokens):
    check_chunks(make_article(text, title=title, zone=zone),
                 SentenceChunker(max_tokens=max_tokens, overlap_sentences=1))


@FAST
@given(text=st.one_of(mixed_text, any_text, paragraphish))
def test_sentence_spans_cover_every_character_in_order(text):
    spans = sentence_spans(text)
    covered: set[int] = set()
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end
        assert text[start:end].strip() == text[start:end]
        covered.update(range(start, end))
        previous_end = end
    assert covered >= non_space_positions(text)


# -- the parser ----------------------------------------------------------------------------------

ZONE_LINES = [
    "侯马经济开发区", "太原经济技术开发区", "广灵经济技术开发区", "山西转型综合改革示范区"
]
NAMES = ["王波", "贺玉斌", "冯慧媛", "张晨帆"]
title_text = st.text(alphabet=HAN, min_size=2, max_size=30)
body_sentence = st.builds(
    lambda body, end: body + end,
    st.text(alphabet=HAN + "，、", min_size=1, max_size=50).filter(lambda s: s[0] in HAN),
    st.sampled_from("。！？"),
)
paragraph = st.lists(body_sentence, min_size=1, max_size=6).map("".join)


@st.composite
def bulletin(draw):
    """A bulletin issue as printed, with the print artifacts the parser must repair.

    Returns the text and, per article, what the parser must find: title, zone, byline and the
    paragraphs (the byline is not part of the text).
    """
    lines: list[str] = []
    expected = []
    count = draw(st.integers(min_value=1, max_value=5))
    titles = draw(st.lists(title_text, min_size=count, max_size=count, unique=True))
    for title in titles:
        zone = draw(st.sampled_from(ZONE_LINES))
        byline = draw(st.sampled_from(NAMES))
        paragraphs = draw(st.lists(paragraph, min_size=1, max_size=4))
        lines += [zone, "", f"## {title}", ""]
        paragraphs = ["本刊讯 " + paragraphs[0], *paragraphs[1:]]
        for index, para in enumerate(paragraphs):
            printed = para + (f"（{byline}）" if index == len(paragraphs) - 1 else "")
            # A page break in the middle of a paragraph: a cut at a random character, with
            # blank lines and maybe a page number between the halves.
            if len(para) > 4 and draw(st.booleans()):
                cut = draw(st.integers(min_value=1, max_value=len(para) - 2))
                if printed[cut - 1] in HAN:
                    noise = draw(st.sampled_from(["", "\n", "\n\n- 3 -\n", "\n12\n"]))
                    printed = printed[:cut] + "\n" + noise + printed[cut:]
            lines += [printed + draw(st.sampled_from(["", " ", "\u3000"])), ""]
        expected.append((title, zone, byline, paragraphs))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines), expected


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@FAST
@given(data=bulletin())
def test_parser_finds_every_article_and_loses_no_text(data):
    text, expected = data
    articles, _problems = parse_bulletin(text, "2023-06", "issue.txt")
    assert [a.title for a in articles] == [title for title, *_ in expected]
    for article, (_title, zone, byline, paragraphs) in zip(articles, expected, strict=True):
        assert article.zone == zone
        assert article.byline == byline
        # Every character of the body is kept, in order; the byline is taken out.
        assert squeeze(article.text) == squeeze("".join(paragraphs))
        assert article.text.strip() and "\n\n" not in article.text
        check_chunks(article, SentenceChunker(max_tokens=64, overlap_sentences=1))


PARSER_LINES = [*ZONE_LINES, "## 标题", "# 标题", "### 小节", "——副标题", "本刊讯 内容。",
                "（王波）", "撰稿：冯慧媛", "3", "- 12 -", "<sup>2</sup>", "&amp;", "<b>粗</b>", ""]
bulletin_like = st.lists(st.one_of(st.sampled_from(PARSER_LINES), mixed_text), max_size=40).map(
    "\n".join
)


@FAST
@given(text=st.one_of(any_text, mixed_text, bulletin_like))
def test_parser_never_crashes_and_every_article_is_usable(text):
    articles, problems = parse_bulletin(text, "issue", "f.txt")
    ids = [a.article_id for a in articles]
    assert len(ids) == len(set(ids))
    for article in articles:
        assert article.title.strip()
        assert article.text.strip()
        check_chunks(article, SentenceChunker(max_tokens=48, overlap_sentences=1))
    for problem in problems:
        assert problem.source == "f.txt" and problem.line >= 0 and problem.message


JSONL_LINES = [
    '{"id": "a", "title": "标题", "text": "正文。"}',
    '{"id": 1, "title": null, "text": ["x"]}',
    '{"id": "", "title": "t", "text": "x"}',
    '{"id": true, "title": "t", "text": "x"}',
    '{"id": "b", "title": "t", "text": ""}',
    '{"id": "c", "title": "t", "text": "\\u0000 \\n "}',
    '{"id": "d", "title": "t", "text": 1e999}',
    '{"id": "e", "title": "t", "text": {}}',
    "[1, 2]", "null", '"text"', "{", "",
]
jsonl_like = st.lists(
    st.one_of(st.sampled_from(JSONL_LINES), any_text.map(lambda s: s.replace("\n", " "))),
    max_size=20,
).map("\n".join)


@FAST
@given(text=st.one_of(any_text, jsonl_like))
def test_jsonl_parser_never_crashes(text):
    articles, problems = parse_jsonl(text, "issue", "f.jsonl")
    assert len({a.article_id for a in articles}) == len(articles)
    for article in articles:
        assert article.article_id.strip() and article.text.strip()
    assert all(p.line >= 1 for p in problems)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".txt", ".jsonl", ".json", ".md"]))
@example(data=b"\xff\xfe", suffix=".txt")
@example(data=b"\xef\xbb\xbf", suffix=".txt")
@example(data=b"\x00" * 10, suffix=".txt")
@example(data="标题\n正文。".encode("gb18030"), suffix=".txt")
def test_load_file_on_any_bytes_either_parses_or_refuses_with_a_reason(tmp_path_factory, data,
                                                                       suffix):
    path = tmp_path_factory.mktemp("bytes") / f"issue{suffix}"
    path.write_bytes(data)
    try:
        articles, problems = load_file(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and exc.problem.message
        return
    assert articles
    for problem in problems:
        assert problem.source == str(path)


@pytest.mark.parametrize("budget", [32, 64, 200])
def test_chunker_on_the_seed_issue_covers_every_article(budget):
    from tests.conftest import SEED_ISSUE

    articles, _ = load_file(SEED_ISSUE)
    for article in articles:
        check_chunks(article, SentenceChunker(max_tokens=budget, overlap_sentences=1))
