"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates, fused, one hit per article.

A question that names a zone prefers that zone's chunks; `zone=` filters hard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from qa_bot.config import RetrievalSettings
from qa_bot.embedding import Embedder
from qa_bot.index import Snapshot
from qa_bot.lexical import LexicalTokenizer
from qa_bot.records import Hit
from qa_bot.zones import ZoneTable

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class Candidate:
    row: int
    score: float
    dense_rank: int | None = None
    dense_score: float | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None


def fuse(
    dense: list[tuple[int, float]],
    lexical: list[tuple[int, float]],
    settings: RetrievalSettings,
    query_tokens: int = 1,
) -> list[Candidate]:
    """Fuse two ranked lists of (row, score), best first, into one ranking.

    "score" fusion (default) adds calibrated scores: dense cosine relative to the best one
    (1 at the top, 0 at `dense_temperature` below it) and BM25 per query token relative to
    `lexical_scale`, capped at 1. Unlike rank fusion it knows how strong each list's evidence
    is: a BM25 list whose best match shares one word with the question cannot outvote a clear
    dense match, and a dense list of near-equal cosines cannot outvote an exact-term match.
    "rrf" is weighted reciprocal rank fusion, kept for comparison.
    """
    entries: dict[int, dict] = {}
    for rank, (row, score) in enumerate(dense, start=1):
        entries.setdefault(row, {})["dense"] = (rank, score)
    for rank, (row, score) in enumerate(lexical, start=1):
        entries.setdefault(row, {})["lexical"] = (rank, score)
    dense_top = dense[0][1] if dense else 0.0
    lexical_unit = max(query_tokens, 1) * settings.lexical_scale
    fused = []
    for row, found in entries.items():
        dense_rank, dense_score = found.get("dense", (None, None))
        lexical_rank, lexical_score = found.get("lexical", (None, None))
        score = 0.0
        if settings.fusion == "rrf":
            if dense_rank is not None:
                score += settings.dense_weight / (settings.rrf_k + dense_rank)
            if lexical_rank is not None:
                score += settings.lexical_weight / (settings.rrf_k + lexical_rank)
        else:
            if dense_score is not None:
                closeness = 1.0 - (dense_top - dense_score) / settings.dense_temperature
                score += settings.dense_weight * max(closeness, 0.0)
            if lexical_score is not None:
                score += settings.lexical_weight * min(lexical_score / lexical_unit, 1.0)
        fused.append(Candidate(row, score, dense_rank, dense_score, lexical_rank, lexical_score))
    # Capped BM25 scores can tie; the raw score still orders them.
    fused.sort(key=lambda c: (-c.score, -(c.lexical_score or 0.0), c.row))
    return fused


def _merged(ranked: list[tuple[int, float]], extra: list[tuple[int, float]]):
    """`ranked` followed by the rows of `extra` it lacks, best first (a row appears once)."""
    seen = {row for row, _ in ranked}
    return ranked + sorted(((r, s) for r, s in extra if r not in seen), key=lambda x: -x[1])


class Retriever:
    """Finds the passages of a snapshot that best match a question."""

    def __init__(
        self,
        settings: RetrievalSettings,
        embedder: Embedder,
        snapshot: Snapshot,
        tokenizer: LexicalTokenizer,
        zones: ZoneTable,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.snapshot = snapshot
        self.tokenizer = tokenizer
        self.zones = zones
        self._article_rows: dict | None = None  # article id → its chunk rows, built on first use

    def search(
        self,
        question: str,
        k: int | None = None,
        zone: str | None = None,
        mode: str = "hybrid",
        include_article: str | None = None,
    ) -> list[Hit]:
        """Best chunk of each of the top-k articles, best first.

        `include_article` (the article a conversation is about): its best chunk is looked for
        among that article's chunks too, and appended after the k hits when it is not among
        them, so the caller can put it first without a second query.
        """
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {MODES}")
        k = k or self.settings.top_k
        allowed = self.snapshot.rows_in_zone(zone) if zone else None
        named_zones = [] if zone else self.zones.find(question)

        dense: list[tuple[int, float]] = []
        if mode in ("hybrid", "dense"):
            query_vector = self.embedder.encode_queries([question])[0]
            dense = self.snapshot.dense_search(query_vector, self.settings.dense_depth, allowed)
        lexical: list[tuple[int, float]] = []
        query_tokens = self.tokenizer.tokenize(" ".join([question, *named_zones]))
        if mode in ("hybrid", "bm25"):
            lexical = self.snapshot.lexical.search(
                query_tokens, self.settings.lexical_depth, allowed
            )

        candidates = fuse(dense, lexical, self.settings, len(query_tokens))
        if named_zones:
            candidates = self._prefer_zones(candidates, set(named_zones))
        best = self._best_per_article(candidates)
        if mode == "hybrid" and not named_zones:
            best = self._keep_champions(best, [dense[:1], lexical[:1]])
        shown = best[:k]
        if include_article and all(self._article(c) != include_article for c in shown):
            # Scored in a second fusion, so the k hits stay exactly those of the question alone.
            extra = self._article_candidate(include_article, dense, lexical, query_tokens,
                                            query_vector if dense else None, mode, zone)
            shown += [extra] if extra is not None else []
        return [self._hit(candidate) for candidate in shown]

    def _article_candidate(self, article_id, dense, lexical, query_tokens, query_vector,
                           mode, zone) -> Candidate | None:
        """The best candidate of one article, its own chunks searched too."""
        rows = self._rows_of_article(article_id)
        if zone is not None or not rows.size:
            return None
        if query_vector is not None:
            dense = _merged(dense, self.snapshot.dense_search(query_vector, rows.size, rows))
        if mode in ("hybrid", "bm25"):
            lexical = _merged(lexical, self.snapshot.lexical.search(query_tokens, rows.size,
                                                                    rows))
        fused = fuse(dense, lexical, self.settings, len(query_tokens))
        return next((c for c in fused if self._article(c) == article_id), None)

    def _article(self, candidate: Candidate) -> str:
        return self.snapshot.chunks[candidate.row].article_id

    def _rows_of_article(self, article_id: str):
        if self._article_rows is None:
            by_article: dict[str, list[int]] = {}
            for row, chunk in enumerate(self.snapshot.chunks):
                by_article.setdefault(chunk.article_id, []).append(row)
            self._article_rows = {
                article: np.array(rows, dtype=np.int64) for article, rows in by_article.items()
            }
        return self._article_rows.get(article_id, np.array([], dtype=np.int64))

    def _prefer_zones(self, candidates: list[Candidate], zones: set[str]) -> list[Candidate]:
        boost = 1.0 + self.settings.zone_boost
        chunks = self.snapshot.chunks
        boosted = [
            Candidate(c.row, c.score * boost, c.dense_rank, c.dense_score, c.lexical_rank,
                      c.lexical_score)
            if chunks[c.row].zone in zones else c
            for c in candidates
        ]
        boosted.sort(key=lambda c: (-c.score, c.row))
        return boosted

    def _best_per_article(self, candidates: list[Candidate]) -> list[Candidate]:
        """The best candidate of each article, in order."""
        best: list[Candidate] = []
        seen: set[str] = set()
        for candidate in candidates:
            article = self.snapshot.chunks[candidate.row].article_id
            if article not in seen:
                seen.add(article)
                best.append(candidate)
        return best

    def _keep_champions(
        self, best: list[Candidate], tops: list[list[tuple[int, float]]]
    ) -> list[Candidate]:
        """Keep each retriever's first article within the first `champion_slots` places.

        Fused scores can bury an article that one retriever ranks first and the other ranks
        low or never finds (a paraphrase BM25 misses, a rare name the model blurs). Showing
        it costs the lowest place of the page, never the first.
        """
        slots = self.settings.champion_slots
        chunks = self.snapshot.chunks
        champions = {chunks[top[0][0]].article_id for top in tops if top}
        shown, rest = best[:slots], best[slots:]
        for candidate in [c for c in rest if chunks[c.row].article_id in champions]:
            # The lowest place held by an article that is not a champion; the first place is
            # always the fused best, which the answer sentence comes from.
            place = next((i for i in range(len(shown) - 1, 0, -1)
                          if chunks[shown[i].row].article_id not in champions), None)
            if place is None:
                break
            rest.remove(candidate)
            rest.insert(0, shown.pop(place))
            shown.append(candidate)
        return shown + rest

    def _hit(self, candidate: Candidate) -> Hit:
        return Hit(
            chunk=self.snapshot.chunks[candidate.row],
            score=candidate.score,
            dense_rank=candidate.dense_rank,
            lexical_rank=candidate.lexical_rank,
            dense_score=candidate.dense_score,
            lexical_score=candidate.lexical_score,
        )
