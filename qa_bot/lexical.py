"""BM25 over jieba tokens: the half of retrieval that handles names, numbers and rare terms.

Tokens are jieba search-mode words of the Simplified, lower-cased text, minus stop words and
punctuation. The zone table feeds jieba's user dictionary so zone names stay whole words.
The BM25 matrix (bm25s) is built at ingest time and saved beside the FAISS index.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from qa_bot.chinese import to_simplified

log = logging.getLogger(__name__)

# Question words and fillers that carry no topic; added to bm25s's Chinese list.
_EXTRA_STOPWORDS = {
    "什么", "哪些", "哪个", "哪家", "哪位", "哪里", "哪儿", "哪天", "多少", "几", "几个", "几家",
    "谁", "怎样", "怎么", "如何", "为什么", "是否", "有没有", "是不是", "吗", "呢", "了", "的",
    "是", "在", "和", "与", "及", "等", "有", "被", "把", "对", "将", "也", "都", "就", "还",
}
_TOKEN_KEEP = re.compile(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff]")
TOKENIZER_VERSION = 1  # bump when tokenisation changes, so old indexes are rebuilt


class LexicalTokenizer:
    """jieba search-mode tokens, stop words removed; the same for documents and queries."""

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        self.user_words = sorted(set(user_words))
        self._jieba = None
        self._stopwords: frozenset[str] | None = None

    def warm_up(self) -> None:
        if self._jieba is not None:
            return
        import jieba
        from bm25s.stopwords import STOPWORDS_CHINESE

        jieba.setLogLevel(logging.WARNING)
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        for word in self.user_words:
            tokenizer.add_word(to_simplified(word).lower(), freq=200_000)
        self._stopwords = frozenset(STOPWORDS_CHINESE) | _EXTRA_STOPWORDS
        self._jieba = tokenizer

    def signature(self) -> str:
        """Identifies the tokenisation, so the manifest catches a changed dictionary."""
        digest = hashlib.sha256("\n".join(self.user_words).encode()).hexdigest()[:12]
        return f"jieba-search-v{TOKENIZER_VERSION}-{digest}"

    def add_words(self, words: Iterable[str]) -> None:
        new = set(words) - set(self.user_words)
        if not new:
            return
        self.user_words = sorted(set(self.user_words) | new)
        if self._jieba is not None:
            for word in new:
                self._jieba.add_word(to_simplified(word).lower(), freq=200_000)

    def tokenize(self, text: str) -> list[str]:
        self.warm_up()
        normalised = to_simplified(text).lower()
        return [
            token
            for token in self._jieba.cut_for_search(normalised)
            if token not in self._stopwords and _TOKEN_KEEP.search(token)
        ]

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]


class LexicalIndex:
    """A BM25 index over token lists; rows are aligned with the chunk table."""

    _EMPTY_MARKER = "empty"

    def __init__(self, bm25) -> None:
        self._bm25 = bm25  # None for an index of no rows, which bm25s cannot represent

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> LexicalIndex:
        import bm25s

        if not token_lists:
            return cls(None)
        bm25 = bm25s.BM25(k1=1.2, b=0.75)
        # An empty document would break bm25s's vocabulary; a sentinel token keeps rows aligned.
        corpus = [tokens or ["\x00"] for tokens in token_lists]
        bm25.index(corpus, show_progress=False)
        return cls(bm25)

    def save(self, directory: Path) -> None:
        if self._bm25 is None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / self._EMPTY_MARKER).touch()
        else:
            self._bm25.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        import bm25s

        if (directory / cls._EMPTY_MARKER).exists():
            return cls(None)
        if not (directory / "params.index.json").exists():
            raise FileNotFoundError(2, "BM25 index missing", str(directory / "params.index.json"))
        return cls(bm25s.BM25.load(str(directory), mmap=False, show_progress=False))

    @property
    def size(self) -> int:
        return 0 if self._bm25 is None else int(self._bm25.scores["num_docs"])

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every row for the query (zeros when no token is known)."""
        if self._bm25 is None:
            return np.zeros(0, dtype=np.float32)
        token_ids = self._bm25.get_tokens_ids(query_tokens)
        if not token_ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(token_ids), dtype=np.float32)

    def search(
        self, query_tokens: list[str], depth: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top `depth` (row, score) with a positive score, optionally within allowed rows."""
        scores = self.scores(query_tokens)
        if allowed is not None:
            masked = np.zeros_like(scores)
            masked[allowed] = scores[allowed]
            scores = masked
        return top_positive(scores, depth)


def top_positive(scores: np.ndarray, depth: int) -> list[tuple[int, float]]:
    """Indices and values of the `depth` largest positive scores, best first."""
    if depth <= 0 or scores.size == 0:
        return []
    depth = min(depth, scores.size)
    candidates = np.argpartition(-scores, depth - 1)[:depth]
    candidates = candidates[scores[candidates] > 0]
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [(int(row), float(scores[row])) for row in order]
