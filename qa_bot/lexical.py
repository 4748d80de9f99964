"""BM25 over jieba tokens: the half of retrieval that handles names, numbers and rare terms.

Tokens are jieba search-mode words of the Simplified, lower-cased text, minus stop words and
punctuation. The zone table feeds jieba's user dictionary so zone names stay whole words.
The BM25 matrix (bm25s) is built at ingest time and saved beside the FAISS index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
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


_BASE_DICTIONARY: tuple[dict, int] | None = None  # jieba's own dictionary, never modified
_BASE_LOCK = threading.Lock()


def _new_jieba_tokenizer():
    """A jieba tokenizer with the default dictionary, its own copy to add zone words to.

    Reading the dictionary (jieba's marshal cache, 500k entries) costs ~0.5 s of CPU; it is
    read once per process and copied (~20 ms) for each tokenizer after that: a reloaded
    snapshot in the bot, or ingest after ingest, no longer pays it again.
    """
    import jieba

    global _BASE_DICTIONARY
    jieba.setLogLevel(logging.WARNING)
    with _BASE_LOCK:
        if _BASE_DICTIONARY is None:
            base = jieba.Tokenizer()
            base.initialize()
            _BASE_DICTIONARY = (base.FREQ, base.total)
    frequencies, total = _BASE_DICTIONARY
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = dict(frequencies), total
    tokenizer.initialized = True
    return tokenizer


def _bm25s_chinese_stopwords() -> frozenset[str]:
    """bm25s's Chinese stop words, read from its module file without importing the package:
    `import bm25s` pulls in scipy, ~0.2 s of every `qa-bot ask` for a list of words."""
    import importlib.util

    spec = importlib.util.find_spec("bm25s")  # locates the package; does not import it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "stopwords.py"
        module_spec = importlib.util.spec_from_file_location("_qa_bot_bm25s_stopwords", path)
        if module_spec is not None and module_spec.loader is not None and path.is_file():
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return frozenset(module.STOPWORDS_CHINESE)
    from bm25s.stopwords import STOPWORDS_CHINESE  # an unusual install: the normal way

    return frozenset(STOPWORDS_CHINESE)


class LexicalTokenizer:
    """jieba search-mode tokens, stop words removed; the same for documents and queries."""

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        self.user_words = sorted(set(user_words))
        self._jieba = None
        self._stopwords: frozenset[str] | None = None

    def warm_up(self) -> None:
        if self._jieba is not None:
            return
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        tokenizer = _new_jieba_tokenizer()
        for word in self.user_words:
            tokenizer.add_word(to_simplified(word).lower(), freq=200_000)
        self._stopwords = _bm25s_chinese_stopwords() | _EXTRA_STOPWORDS
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

    def tokenize(self, text: str, hmm: bool = True) -> list[str]:
        """Search tokens. hmm=False keeps to dictionary words: no guessed words like 县到."""
        self.warm_up()
        normalised = to_simplified(text).lower()
        return [
            token
            for token in self._jieba.cut_for_search(normalised, HMM=hmm)
            if token not in self._stopwords and _TOKEN_KEEP.search(token)
        ]

    def is_stopword(self, word: str) -> bool:
        self.warm_up()
        return word in self._stopwords

    def segment(self, text: str, hmm: bool = True) -> list[str]:
        """Plain jieba words of text as printed (with HMM, unseen names stay whole)."""
        self.warm_up()
        return list(self._jieba.cut(text, HMM=hmm))

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]


class LexicalIndex:
    """A BM25 index over token lists; rows are aligned with the chunk table.

    Built (and saved) with bm25s at ingest time. Loading reads bm25s's files directly — the
    precomputed per-token score columns (CSC arrays) and the vocabulary — so answering never
    imports bm25s (and scipy with it: half a second of `qa-bot ask`). Scores are the same
    float32 sums bm25s computes.
    """

    _EMPTY_MARKER = "empty"
    _FILES = (("data", "data.csc.index.npy"), ("indices", "indices.csc.index.npy"),
              ("indptr", "indptr.csc.index.npy"))

    def __init__(
        self,
        bm25=None,
        *,
        arrays: dict[str, np.ndarray] | None = None,
        vocab: dict[str, int] | None = None,
        num_docs: int = 0,
        nonoccurrence: np.ndarray | None = None,
        params: dict | None = None,
    ) -> None:
        self._bm25 = bm25  # the bm25s object when built here (None when loaded, or empty)
        if bm25 is not None:
            arrays = {key: bm25.scores[key] for key, _ in self._FILES}
            vocab = bm25.vocab_dict
            num_docs = int(bm25.scores["num_docs"])
            nonoccurrence = getattr(bm25, "nonoccurrence_array", None)
        self._data = arrays["data"] if arrays else np.zeros(0, dtype=np.float32)
        self._indices = arrays["indices"] if arrays else np.zeros(0, dtype=np.int32)
        self._indptr = arrays["indptr"] if arrays else np.zeros(1, dtype=np.int32)
        self._vocab: dict[str, int] = vocab or {}
        self._num_docs = int(num_docs)
        self._nonoccurrence = nonoccurrence
        self._params = params or {}

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> LexicalIndex:
        import bm25s

        # bm25s logs every index build at DEBUG on a logger of its own level; keep ours quiet.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        if not token_lists:
            return cls(None)
        bm25 = bm25s.BM25(k1=1.2, b=0.75)
        # An empty document would break bm25s's vocabulary; a sentinel token keeps rows aligned.
        corpus = [tokens or ["\x00"] for tokens in token_lists]
        bm25.index(corpus, show_progress=False)
        return cls(bm25)

    def save(self, directory: Path) -> None:
        if self._num_docs == 0:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / self._EMPTY_MARKER).touch()
        elif self._bm25 is not None:
            self._bm25.save(str(directory), show_progress=False)
        else:  # loaded, not built: write the same files bm25s would
            directory.mkdir(parents=True, exist_ok=True)
            for key, name in self._FILES:
                np.save(directory / name, getattr(self, "_" + key), allow_pickle=False)
            if self._nonoccurrence is not None:
                np.save(directory / "nonoccurrence_array.index.npy", self._nonoccurrence)
            (directory / "vocab.index.json").write_text(
                json.dumps(self._vocab, ensure_ascii=False), encoding="utf-8"
            )
            (directory / "params.index.json").write_text(
                json.dumps(self._params, indent=4), encoding="utf-8"
            )

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Read an index saved by save(); ValueError / OSError when a file is damaged."""
        if (directory / cls._EMPTY_MARKER).exists():
            return cls(None)
        params_path = directory / "params.index.json"
        if not params_path.exists():
            raise FileNotFoundError(2, "BM25 index missing", str(params_path))
        params = json.loads(params_path.read_text(encoding="utf-8"))
        if not isinstance(params, dict):
            raise ValueError(f"{params_path}: not a JSON object")
        vocab = json.loads((directory / "vocab.index.json").read_text(encoding="utf-8"))
        if not isinstance(vocab, dict):
            raise ValueError(f"{directory / 'vocab.index.json'}: not a JSON object")
        arrays = {
            key: np.load(directory / name, allow_pickle=False) for key, name in cls._FILES
        }
        nonoccurrence_path = directory / "nonoccurrence_array.index.npy"
        nonoccurrence = (
            np.load(nonoccurrence_path, allow_pickle=False) if nonoccurrence_path.exists()
            else None
        )
        num_docs = int(params["num_docs"])
        data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        if (
            data.ndim != 1 or data.shape != indices.shape or indptr.ndim != 1
            # bm25s's vocabulary may hold one extra entry, "", that has no column
            or not len(indptr) - 1 <= len(vocab) <= len(indptr) or int(indptr[-1]) != len(data)
            or (len(indices) and (int(indices.max()) >= num_docs or int(indices.min()) < 0))
        ):
            raise ValueError(f"{directory}: BM25 arrays do not fit together")
        return cls(None, arrays=arrays, vocab=vocab, num_docs=num_docs,
                   nonoccurrence=nonoccurrence, params=params)

    @property
    def size(self) -> int:
        return self._num_docs

    @property
    def vocabulary(self) -> dict[str, int]:
        return self._vocab

    def document_frequencies(self) -> dict[str, int]:
        """Rows holding each token (the BM25 columns' lengths): no pass over the token lists."""
        counts = np.diff(self._indptr)
        return {
            token: int(counts[column]) for token, column in self._vocab.items()
            if column < len(counts)
        }

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every row for the query (zeros when no token is known)."""
        if self._num_docs == 0:
            return np.zeros(0, dtype=np.float32)
        columns = len(self._indptr) - 1
        token_ids = [
            column for column in (self._vocab.get(token, columns) for token in query_tokens)
            if column < columns
        ]
        scores = np.zeros(self._num_docs, dtype=np.float32)
        for column in token_ids:  # a repeated query token counts again, as in bm25s
            start, end = self._indptr[column], self._indptr[column + 1]
            # np.add.at, as bm25s: in numpy 2 it is 2-3x faster than `scores[rows] += data`.
            np.add.at(scores, self._indices[start:end], self._data[start:end])
        if self._nonoccurrence is not None and token_ids:
            scores += self._nonoccurrence[token_ids].sum()
        return scores

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
