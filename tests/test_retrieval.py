"""Fusion and zone handling on small hand-built inputs (no model)."""

from dataclasses import replace

import pytest

from qa_bot.config import RetrievalSettings
from qa_bot.retrieval import fuse

SCORE = RetrievalSettings()
RRF = replace(SCORE, fusion="rrf", dense_weight=1.0, lexical_weight=1.0, rrf_k=60)


def rows(candidates):
    return [c.row for c in candidates]


def test_rrf_matches_the_formula():
    fused = fuse([(1, 0.9), (2, 0.8)], [(2, 12.0), (3, 5.0)], RRF)
    scores = {c.row: c.score for c in fused}
    assert scores[2] == pytest.approx(1 / 62 + 1 / 61)
    assert scores[1] == pytest.approx(1 / 61)
    assert scores[3] == pytest.approx(1 / 62)
    assert rows(fused) == [2, 1, 3]


def test_score_fusion_formula_and_agreement():
    settings = replace(SCORE, dense_weight=0.4, lexical_weight=0.6, dense_temperature=0.1,
                       lexical_scale=3.0)
    fused = fuse([(1, 0.90), (2, 0.85)], [(2, 9.0), (3, 3.0)], settings, query_tokens=3)
    scores = {c.row: c.score for c in fused}
    assert scores[1] == pytest.approx(0.4 * 1.0)
    assert scores[2] == pytest.approx(0.4 * 0.5 + 0.6 * 1.0)
    assert scores[3] == pytest.approx(0.6 * 3.0 / 9.0)
    assert rows(fused) == [2, 1, 3]
    first = fused[0]
    assert (first.dense_rank, first.lexical_rank) == (2, 1)


def test_a_weak_lexical_match_does_not_outvote_a_clear_dense_match():
    """BM25's best hit shares one word with a 6-token question; dense is sure of row 7."""
    dense = [(7, 0.88), (8, 0.80)]
    lexical = [(8, 2.0), (9, 1.5)]
    assert rows(fuse(dense, lexical, SCORE, query_tokens=6))[0] == 7
    # Rank fusion cannot tell: it puts the row both lists contain first.
    assert rows(fuse(dense, lexical, RRF))[0] == 8


def test_a_strong_lexical_match_beats_near_equal_cosines():
    dense = [(1, 0.861), (2, 0.860), (3, 0.859)]
    lexical = [(3, 30.0), (1, 4.0)]
    assert rows(fuse(dense, lexical, SCORE, query_tokens=5))[0] == 3


def test_single_retriever_modes_keep_their_order():
    dense = [(5, 0.9), (4, 0.8), (6, 0.7)]
    assert rows(fuse(dense, [], SCORE)) == [5, 4, 6]
    lexical = [(6, 9.0), (4, 8.0)]
    assert rows(fuse([], lexical, SCORE, query_tokens=1)) == [6, 4]


def _retriever(slots: int, articles: list[str]):
    """A Retriever over chunk rows 0..n-1, row i belonging to articles[i] (no model)."""
    from types import SimpleNamespace

    from qa_bot.retrieval import Candidate, Retriever

    snapshot = SimpleNamespace(chunks=[SimpleNamespace(article_id=a) for a in articles])
    retriever = Retriever(replace(SCORE, champion_slots=slots), embedder=None, snapshot=snapshot,
                          tokenizer=None, zones=None)
    best = [Candidate(row, 1.0 - row / 10) for row in range(len(articles))]
    return retriever, best


ARTICLES = list("ABCDEFGH")


def test_each_retrievers_first_article_keeps_a_place_on_the_page():
    retriever, best = _retriever(5, ARTICLES)
    # Dense ranks G first (fused 7th); BM25's first, A, is shown anyway.
    kept = retriever._keep_champions(best, [[(6, 0.9)], [(0, 12.0)]])
    assert [ARTICLES[c.row] for c in kept] == list("ABCDGEFH")
    # Both champions buried: they take the lowest places, in fused order; nothing is lost.
    kept = retriever._keep_champions(best, [[(6, 0.9)], [(7, 12.0)]])
    assert [ARTICLES[c.row] for c in kept] == list("ABCGHDEF")


def test_champions_never_take_the_first_place_and_can_be_turned_off():
    retriever, best = _retriever(2, ARTICLES)
    kept = retriever._keep_champions(best, [[(6, 0.9)], [(7, 3.0)]])
    assert [ARTICLES[c.row] for c in kept][:3] == ["A", "G", "B"]  # one place to give: G's
    retriever, best = _retriever(1, ARTICLES)
    assert retriever._keep_champions(best, [[(6, 0.9)], []]) == best
    retriever, best = _retriever(0, ARTICLES)
    assert retriever._keep_champions(best, [[(6, 0.9)], [(7, 1.0)]]) == best
