"""Span reader: the exact answer span inside candidate sentences, from a small trained model.

The bundled e5 encoder's lower layers (frozen) + upper layers and a start/end head trained by
``qa_bot.reader_training`` (artifacts in ``qa_bot/data/reader/``), run with onnxruntime. The
ONNX graph is exported once into the model cache (``reader_export``, which needs torch); after
that nothing here imports torch.

Input per context: ``<s> query: <question> </s></s> <context> </s>``, at most ``max_tokens``
tokens. A span is the best start ≤ end pair of context tokens at most ``MAX_ANSWER_TOKENS``
long; its score is start + end logit minus the no-answer score (both logits at ``<s>``), so a
score below zero means the model thinks the context does not answer.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa_bot import runtime
from qa_bot.config import ModelSettings, ReaderSettings
from qa_bot.reader_export import ARTIFACT_META, WORD_TABLE, ensure_reader_onnx, graph_file

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

__all__ = [
    "MAX_ANSWER_TOKENS",
    "QUERY_PROMPT",
    "EncodedPair",
    "ReaderSpan",
    "SpanReader",
    "best_spans",
    "encode_pairs",
    "packaged_reader_dir",
    "pad_batch",
]

logger = logging.getLogger(__name__)

QUERY_PROMPT = "query: "  # the e5 convention for questions
MAX_ANSWER_TOKENS = 30
# Question characters kept: the context, not a long question, gets the token budget.
_MAX_QUESTION_CHARS = 64
_METASPACE = "▁"


def packaged_reader_dir() -> Path:
    """The trained reader committed with the package."""
    return Path(__file__).parent / "data" / "reader"


@dataclass(frozen=True)
class ReaderSpan:
    context: int  # index into the contexts given
    start: int  # character offsets into that context string
    end: int
    score: float  # start+end logit of the span minus the context's no-answer (CLS) score


@dataclass(frozen=True)
class EncodedPair:
    """One (question, context) model input and where its context tokens sit in the context."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]  # character offsets into the context; (0, 0) elsewhere
    candidate: list[bool]  # tokens a span may start or end on: context tokens with text


def encode_pairs(
    tokenizer: Tokenizer, question: str, contexts: Sequence[str], max_tokens: int
) -> list[EncodedPair]:
    """Tokenize ``query: question`` with each context, the context's tail cut to fit.

    The tokenizer is only read, never reconfigured, so one shared with the sentence encoder
    (whatever its truncation and padding settings) gives the same pairs.
    """
    prompt = QUERY_PROMPT + question.strip()[:_MAX_QUESTION_CHARS]
    encodings = tokenizer.encode_batch([(prompt, context) for context in contexts])
    pairs = []
    for encoding in encodings:
        length = sum(encoding.attention_mask)  # without padding, if the tokenizer pads
        keep = list(range(length))
        if length > max_tokens:  # <s> question </s></s> context… then the closing </s>
            keep = [*keep[: max_tokens - 1], length - 1]
        ids, tokens = encoding.ids, encoding.tokens
        offsets, sequences = encoding.offsets, encoding.sequence_ids
        in_context = [sequences[i] == 1 for i in keep]
        # A bare "▁" (the word-start marker before CJK text) covers no character of its own.
        candidate = [
            inside and tokens[i] != _METASPACE and offsets[i][1] > offsets[i][0]
            for inside, i in zip(in_context, keep, strict=True)
        ]
        pairs.append(
            EncodedPair(
                [ids[i] for i in keep],
                [offsets[i] if inside else (0, 0) for inside, i in zip(in_context, keep,
                                                                       strict=True)],
                candidate,
            )
        )
    return pairs


def pad_batch(pairs: Sequence[EncodedPair], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask, int64 [batch, longest], padded on the right."""
    longest = max(len(pair.input_ids) for pair in pairs)
    input_ids = np.full((len(pairs), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(pairs), longest), dtype=np.int64)
    for row, pair in enumerate(pairs):
        input_ids[row, : len(pair.input_ids)] = pair.input_ids
        attention_mask[row, : len(pair.input_ids)] = 1
    return input_ids, attention_mask


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    candidate: Sequence[bool],
    top: int = 1,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[tuple[int, int, float]]:
    """The ``top`` (start token, end token, score) with start ≤ end < start + max_answer_tokens
    over candidate tokens, best first; score = start + end logit − (start + end logit at 0)."""
    allowed = np.asarray(candidate, dtype=bool)
    length = len(allowed)
    if not allowed.any():
        return []
    start = np.asarray(start_logits[:length], dtype=np.float64)
    end = np.asarray(end_logits[:length], dtype=np.float64)
    pair = start[:, None] + end[None, :]
    offset = np.arange(length)[None, :] - np.arange(length)[:, None]  # end - start
    valid = (offset >= 0) & (offset < max_answer_tokens) & allowed[:, None] & allowed[None, :]
    pair = np.where(valid, pair, -np.inf)
    flat = pair.ravel()
    count = min(top, int(valid.sum()))
    best = np.argpartition(-flat, count - 1)[:count]
    best = best[np.argsort(-flat[best], kind="stable")]
    null = float(start[0] + end[0])
    return [(int(i // length), int(i % length), float(flat[i]) - null) for i in best]


class SpanReader:
    """Finds answer spans in candidate sentences. Config in ``__init__``, loading in ``warm_up``
    (tokenizer, trained artifacts, the ONNX graph built on first use, the onnxruntime session)."""

    def __init__(
        self,
        settings: ReaderSettings,
        cache_dir: Path | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        """``tokenizer``: the bundled model's, when the caller has it loaded already (the
        sentence encoder's): loading tokenizer.json takes about a second; it is only read."""
        if settings.precision not in runtime.PRECISIONS:
            raise ValueError(
                f"[reader] precision {settings.precision!r} is not one of "
                f"{', '.join(runtime.PRECISIONS)}; set it in config/qa-bot.toml (or "
                "QA_BOT_READER_PRECISION)"
            )
        self.settings = settings
        self.cache_dir = Path(cache_dir or ModelSettings().cache_dir).expanduser()
        self.artifact_dir = (
            Path(settings.path).expanduser() if settings.path else packaged_reader_dir()
        )
        self._tokenizer: Tokenizer | None = tokenizer
        self._session: onnxruntime.InferenceSession | None = None
        self._word_table: np.ndarray | None = None
        self._pad_id = 1
        self._warm_up_lock = threading.Lock()

    @property
    def warmed_up(self) -> bool:
        return self._session is not None

    def start_warm_up(self) -> None:
        """Warm up in a background thread (the tokenizer and the session take about a second),
        while the caller loads the index; `read` waits for it. A missing reader is reported
        now, not at the first question."""
        self._check_artifacts()
        # Not a daemon: a process that fails early (a damaged index) waits for the warm-up to
        # end instead of tearing onnxruntime down under it (a crash at exit otherwise).
        threading.Thread(target=self._warm_up_quietly, name="reader-warm-up").start()

    def _warm_up_quietly(self) -> None:
        try:
            self.warm_up()
        except Exception:  # raised again by the warm_up() that read() makes
            logger.debug("span reader warm-up in the background failed", exc_info=True)

    def _check_artifacts(self) -> dict:
        meta_path = self.artifact_dir / ARTIFACT_META
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"No trained span reader in {self.artifact_dir} ({ARTIFACT_META} missing). "
                "Point [reader] path at the folder `qa-bot train-reader` wrote, or set "
                "[reader] enabled = false."
            )
        return json.loads(meta_path.read_text(encoding="utf-8"))

    def warm_up(self) -> None:
        with self._warm_up_lock:
            if self._session is None:
                self._load()

    def _load(self) -> None:
        from tokenizers import Tokenizer

        from qa_bot.model_convert import ensure_bundled_model

        meta = self._check_artifacts()
        model_dir = ensure_bundled_model(self.cache_dir)
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._pad_id = int(meta.get("pad_id", 1))
        export = ensure_reader_onnx(
            self.artifact_dir, model_dir, self.cache_dir, self.settings.precision
        )
        # Memory-mapped: a question reads only the rows of its own tokens.
        self._word_table = np.load(export / WORD_TABLE, mmap_mode="r", allow_pickle=False)
        self._session = runtime.make_session(
            graph_file(export, self.settings.precision), self.settings.threads
        )

    def read(self, question: str, contexts: Sequence[str], top: int = 1) -> list[ReaderSpan]:
        """Best spans per context, best first overall (one batched ONNX run)."""
        if not contexts:
            return []
        self.warm_up()
        assert self._tokenizer is not None and self._session is not None
        assert self._word_table is not None
        pairs = encode_pairs(self._tokenizer, question, contexts, self.settings.max_tokens)
        input_ids, attention_mask = pad_batch(pairs, self._pad_id)
        word_vectors = self._word_table[input_ids].astype(np.float32)
        start_logits, end_logits = self._session.run(
            ["start_logits", "end_logits"],
            {"inputs_embeds": word_vectors, "attention_mask": attention_mask},
        )
        spans = []
        for index, pair in enumerate(pairs):
            for start, end, score in best_spans(
                start_logits[index], end_logits[index], pair.candidate, top
            ):
                spans.append(
                    ReaderSpan(index, pair.offsets[start][0], pair.offsets[end][1], score)
                )
        spans.sort(key=lambda span: -span.score)
        return spans
