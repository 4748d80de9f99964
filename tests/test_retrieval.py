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
