import itertools

from qa_bot.chinese import sentence_spans
from qa_bot.chunking import SentenceChunker, estimate_tokens
from qa_bot.records import Article


def make_article(text: str, **fields) -> Article:
    defaults = dict(article_id="i/001", issue="i", title="标题", zone="侯马经济开发区",
                    byline="贺玉斌")
    defaults.update(fields)
    return Article(text=text, **defaults)


SENTENCES = [f"第{i}句讲的是开发区第{i}个项目的建设进度和投资情况。" for i in range(40)]


def test_chunks_are_whole_sentences_within_budget_with_overlap():
    article = make_article("".join(SENTENCES[:20]) + "\n" + "".join(SENTENCES[20:]))
    chunker = SentenceChunker(max_tokens=80, overlap_sentences=1)
    chunks = chunker.chunk(article)
    assert len(chunks) > 3
    boundaries = {end for _, end in sentence_spans(article.text)}
    starts = {start for start, _ in sentence_spans(article.text)}
    for chunk in chunks:
        assert chunk.text == article.text[chunk.start : chunk.end]
        assert chunk.start in starts and chunk.end in boundaries
        assert estimate_tokens(chunk.embed_text) + 8 <= 80 + 8
    for before, after in itertools.pairwise(chunks):
        # exactly one shared sentence
        shared = article.text[after.start : before.end]
        assert shared and len(sentence_spans(shared)) == 1


def test_every_character_is_covered_and_metadata_is_kept():
    article = make_article("".join(SENTENCES))
    chunks = SentenceChunker(max_tokens=64, overlap_sentences=0).chunk(article)
    covered = "".join(c.text for c in chunks)
    assert covered == article.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert (chunk.zone, chunk.title, chunk.byline, chunk.issue) == (
            "侯马经济开发区", "标题", "贺玉斌", "i")
        assert chunk.embed_text.startswith("侯马经济开发区 标题\n")


def test_an_over_long_sentence_is_cut_at_clauses():
    long_sentence = "，".join(f"第{i}项工作稳步推进" for i in range(60)) + "。"
    chunks = SentenceChunker(max_tokens=64, overlap_sentences=1).chunk(make_article(long_sentence))
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks if True)  # non-empty
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 64
    # pieces end at a clause mark except the last
    assert all(c.text.endswith("，") for c in chunks[:-1])


def test_short_article_is_one_chunk_and_empty_article_none():
    assert len(SentenceChunker().chunk(make_article("只有一句。"))) == 1
    assert SentenceChunker().chunk(make_article("")) == []


def test_real_tokenizer_counts_can_be_plugged_in():
    calls = []

    def counter(text: str) -> int:
        calls.append(text)
        return len(text) * 2

    chunks = SentenceChunker(max_tokens=100, count_tokens=counter).chunk(
        make_article("".join(SENTENCES[:6])))
    assert calls and len(chunks) >= 2
