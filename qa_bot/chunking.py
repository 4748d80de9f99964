"""Article → chunks of whole sentences that fit the embedding model's window.

Chunks are greedy runs of sentences under a token budget, consecutive chunks sharing
`overlap_sentences` sentences so an answer that straddles a boundary is whole in one of them.
A sentence longer than the budget alone is cut at a clause mark (，、：) or, failing that, hard.
The budget counts the header (zone + title) and the passage prompt, because that is what the
model actually sees (`Chunk.embed_text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from qa_bot.chinese import sentence_spans
from qa_bot.records import Article, Chunk

TokenCounter = Callable[[str], int]

# Room for <s>, </s> and the passage prompt ("passage: " is 3–4 pieces).
_RESERVED_TOKENS = 8
_CLAUSE_MARK = re.compile(r"[，、：:,]")


def estimate_tokens(text: str) -> int:
    """Upper-bound stand-in for a real tokenizer: one token per non-space character."""
    return sum(1 for ch in text if not ch.isspace())


class SentenceChunker:
    """Splits articles into sentence-aligned, overlapping chunks under a token budget."""

    def __init__(
        self,
        max_tokens: int = 200,
        overlap_sentences: int = 1,
        count_tokens: TokenCounter | None = None,
    ) -> None:
        if max_tokens < 32:
            raise ValueError(f"max_tokens={max_tokens} is too small to hold a sentence; use ≥ 32")
        if overlap_sentences < 0:
            raise ValueError("overlap_sentences must be ≥ 0")
        self.max_tokens = max_tokens
        self.overlap_sentences = overlap_sentences
        self.count_tokens = count_tokens or estimate_tokens

    def settings(self) -> dict:
        """What the index manifest records, so a chunker change forces a rebuild."""
        return {"max_tokens": self.max_tokens, "overlap_sentences": self.overlap_sentences}

    def chunk(self, article: Article) -> list[Chunk]:
        header = " ".join(part for part in (article.zone, article.title) if part)
        budget = self.max_tokens - _RESERVED_TOKENS - self.count_tokens(header)
        # A very long title must not starve the body: keep at least half the window for text.
        budget = max(budget, self.max_tokens // 2)
        pieces = self._pieces(article.text, budget)
        return [
            Chunk(
                article_id=article.article_id,
                ordinal=ordinal,
                text=article.text[start:end],
                start=start,
                end=end,
                issue=article.issue,
                title=article.title,
                zone=article.zone,
                byline=article.byline,
                date=article.date,
                byline_names=article.byline_names,
            )
            for ordinal, (start, end) in enumerate(self._pack(pieces, budget))
        ]

    def _pieces(self, text: str, budget: int) -> list[tuple[int, int, int]]:
        """Sentences as (start, end, tokens), over-long ones cut into pieces that fit."""
        pieces = []
        for start, end in sentence_spans(text):
            tokens = self.count_tokens(text[start:end])
            if tokens <= budget:
                pieces.append((start, end, tokens))
            else:
                pieces.extend(self._cut_long_sentence(text, start, end, budget))
        return pieces

    def _cut_long_sentence(
        self, text: str, start: int, end: int, budget: int
    ) -> list[tuple[int, int, int]]:
        pieces = []
        while start < end:
            cut = self._longest_prefix_within(text, start, end, budget)
            clause_ends = [m.end() for m in _CLAUSE_MARK.finditer(text, start, cut)]
            # Prefer a clause boundary unless it would leave a tiny piece.
            if cut < end and clause_ends and clause_ends[-1] - start > (cut - start) // 3:
                cut = clause_ends[-1]
            # A cut may fall after a space; no piece starts or ends with whitespace.
            stop = cut
            while stop > start + 1 and text[stop - 1].isspace():
                stop -= 1
            pieces.append((start, stop, self.count_tokens(text[start:stop])))
            start = cut
            while start < end and text[start].isspace():
                start += 1
        return pieces

    def _longest_prefix_within(self, text: str, start: int, end: int, budget: int) -> int:
        """Largest cut in (start, end] whose prefix fits the budget (at least one character).

        Galloping, then binary search: each cut costs O(budget · log) characters tokenized,
        never the length of the rest of the sentence, so a megabyte-long line without
        sentence punctuation is cut in linear time.
        """
        low, width = start + 1, max(budget, 1)
        while True:
            high = min(end, start + width)
            if self.count_tokens(text[start:high]) > budget:
                break
            if high == end:
                return end
            low, width = high, width * 2
        high -= 1
        while low < high:
            mid = (low + high + 1) // 2
            if self.count_tokens(text[start:mid]) <= budget:
                low = mid
            else:
                high = mid - 1
        return low

    def _pack(self, pieces: list[tuple[int, int, int]], budget: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        first = 0
        while first < len(pieces):
            last, used = first, 0
            while last < len(pieces) and (last == first or used + pieces[last][2] <= budget):
                used += pieces[last][2]
                last += 1
            spans.append((pieces[first][0], pieces[last - 1][1]))
            if last == len(pieces):
                break
            # Overlap, but always move forward by at least one piece, and shrink the overlap
            # until the next piece fits beside it: a chunk of nothing but overlap would only
            # repeat the end of the one before.
            first = max(last - self.overlap_sentences, first + 1)
            overlap_tokens = sum(piece[2] for piece in pieces[first:last])
            while first < last and overlap_tokens + pieces[last][2] > budget:
                overlap_tokens -= pieces[first][2]
                first += 1
        return spans
