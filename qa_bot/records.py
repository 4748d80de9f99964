"""Typed records that flow through the pipeline: corpus → Article → Chunk → Hit → Answer.

Records are plain frozen dataclasses with no behaviour beyond small derived views, so every
stage can be tested on hand-built values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class SourceProblem:
    """Something wrong with an input, located precisely enough for a maintainer to fix it."""

    source: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Article:
    """One article of a bulletin issue, cleaned of print artifacts."""

    article_id: str  # stable across re-ingests of the same issue: "<issue>/<n>" or the JSONL id
    issue: str
    title: str
    text: str  # lead and paragraphs, one paragraph a line, byline removed
    zone: str = ""
    subtitle: str = ""
    byline: str = ""  # as printed, outer brackets removed, e.g. "记者 刘少伟 实习生 康书维"
    date: str = ""
    source: str = ""  # file the article came from
    line: int = 0  # line of the file where the article starts
    # People's names in the byline, e.g. ("刘少伟", "康书维"): no roles, outlets or inner spaces.
    # Last, with a default, so articles.jsonl written before it existed still loads.
    byline_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.byline_names, tuple):  # a list when read back from JSON
            object.__setattr__(self, "byline_names", tuple(self.byline_names))

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.text.split("\n") if p]

    def content_hash(self) -> str:
        """Hash of everything that ends up in chunks; where it came from does not count."""
        payload = json.dumps(
            [self.issue, self.title, self.subtitle, self.zone, self.byline, self.date, self.text],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Chunk:
    """A passage of an article: whole sentences, carrying the article's metadata."""

    article_id: str
    ordinal: int  # position of the chunk in its article
    text: str  # the passage as shown to users
    start: int  # character offsets of the passage in Article.text
    end: int
    issue: str
    title: str
    zone: str = ""
    byline: str = ""
    date: str = ""
    byline_names: tuple[str, ...] = ()  # the article's people (chunks.jsonl before: none)

    def __post_init__(self) -> None:
        if not isinstance(self.byline_names, tuple):  # a list when read back from JSON
            object.__setattr__(self, "byline_names", tuple(self.byline_names))

    @property
    def chunk_id(self) -> str:
        return f"{self.article_id}#{self.ordinal}"

    @property
    def embed_text(self) -> str:
        """What the embedding model sees: zone and title give every passage its context."""
        head = " ".join(part for part in (self.zone, self.title) if part)
        return f"{head}\n{self.text}" if head else self.text

    @property
    def lexical_text(self) -> str:
        """What BM25 indexes: the embedded text and the byline's names, so that a question
        naming the reporter (王天晓写了什么) finds their articles."""
        names = " ".join(self.byline_names)
        return f"{self.embed_text}\n{names}" if names else self.embed_text

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Chunk:
        return cls(**data)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and, for diagnostics, the per-retriever ranks."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    lexical_score: float | None = None


@dataclass(frozen=True)
class AnswerSentence:
    """The sentence that best answers the question, with the span to highlight inside it."""

    text: str
    chunk: Chunk
    span: tuple[int, int] | None = None  # character offsets in text, when a key span was found
    score: float = 0.0
    # "passage": a sentence of the article; otherwise the article field that answers
    # ("byline", "outlet", "zone", "issue", "title"), shown as a line built from that field.
    source: str = "passage"

    @property
    def span_text(self) -> str:
        """The words that answer (shown bold); empty when no key span was found."""
        return self.text[self.span[0] : self.span[1]] if self.span else ""


@dataclass(frozen=True)
class Answer:
    """What the user gets: a key sentence (or None when declining) and the cited passages."""

    question: str
    sentence: AnswerSentence | None
    passages: list[Hit] = field(default_factory=list)
    declined_reason: str = ""  # why no sentence is given; empty when answered
    # A list question answered across articles (哪些开发区…): one cited sentence per item,
    # the first being `sentence`.
    items: list[AnswerSentence] = field(default_factory=list)
    # Added for conversations (qa_bot/conversation.py): how a follow-up was read ("" for a
    # question read as asked), and the articles listed when the message asked to browse.
    understood_as: str = ""
    browse: tuple[Article, ...] = ()

    @property
    def declined(self) -> bool:
        return self.sentence is None

    def to_dict(self) -> dict:
        sentence = _sentence_dict(self.sentence) if self.sentence is not None else None
        return {
            "question": self.question,
            "answer": sentence,
            "declined_reason": self.declined_reason or None,
            "items": [_sentence_dict(item) for item in self.items],
            "passages": [
                {
                    "rank": rank,
                    "score": round(hit.score, 6),
                    "text": hit.chunk.text,
                    "zone": hit.chunk.zone,
                    "title": hit.chunk.title,
                    "byline": hit.chunk.byline,
                    "issue": hit.chunk.issue,
                    "article_id": hit.chunk.article_id,
                }
                for rank, hit in enumerate(self.passages, start=1)
            ],
            "understood_as": self.understood_as or None,
            "browse": [
                {"zone": a.zone, "title": a.title, "byline": a.byline, "issue": a.issue,
                 "article_id": a.article_id}
                for a in self.browse
            ],
        }


def _sentence_dict(sentence: AnswerSentence) -> dict:
    chunk = sentence.chunk
    return {
        "sentence": sentence.text,
        "span": list(sentence.span) if sentence.span else None,
        "span_text": sentence.span_text,
        "source": sentence.source,
        "zone": chunk.zone,
        "title": chunk.title,
        "byline": chunk.byline,
        "issue": chunk.issue,
        "article_id": chunk.article_id,
    }
