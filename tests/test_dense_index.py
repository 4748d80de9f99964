"""The dense index switches from exact to HNSW above `approximate_above` chunks, grows its
graph incrementally, and never returns a removed or replaced chunk (tombstones)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from qa_bot import index as index_module
from qa_bot.index import IndexStore, dense_settings_for, same_graph
from qa_bot.ingest import TOMBSTONE_REBUILD_FRACTION, Ingestor
from tests.conftest import make_settings
from tests.fault_support import FakeEmbedder

SENTENCES = [
    "开发区召开项目建设调度会，听取重点项目进展情况汇报。",
    "企业负责人介绍了新建生产线的产能和投产时间。",
    "管委会主任要求各部门压实责任，确保项目如期投产达效。",
    "园区新引进再生金属企业三家，总投资十二亿元。",
    "会议强调要优化营商环境，推进承诺制和标准地改革。",
    "调研组实地查看了标准化厂房和配套道路建设情况。",
    "全区规模以上工业增加值同比增长百分之八。",
    "培训班邀请专家讲解安全生产和环保政策。",
]
ZONES = ["侯马经济开发区", "运城经济技术开发区", "广灵经济技术开发区", "沁源经济技术开发区"]


def write_issue(path: Path, articles: int, salt: str = "", edited: int | None = None) -> Path:
    """An issue of `articles` short articles (one chunk each), distinct per issue name."""
    with path.open("w", encoding="utf-8") as handle:
        for n in range(articles):
            sentences = [SENTENCES[(n + k) % len(SENTENCES)] for k in range(3)]
            text = f"{path.stem}第{n}篇{salt}。" + "".join(sentences)
            if n == edited:
                text += "此文已经修改，新增一句关于招商引资的内容。"
            row = {"id": f"{path.stem}-{n}", "title": f"{path.stem}标题{n}",
                   "text": text, "zone": ZONES[n % len(ZONES)]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def settings_for(index_dir: Path, approximate_above: int):
    settings = make_settings(index_dir)
    retrieval = replace(settings.retrieval, approximate_above=approximate_above, hnsw_m=8,
                        hnsw_ef_construction=40, hnsw_ef_search=64)
    return replace(settings, retrieval=retrieval)


def ingestor(index_dir: Path, approximate_above: int = 10) -> Ingestor:
    return Ingestor(settings_for(index_dir, approximate_above), FakeEmbedder(),
                    show_progress=False)


def checked_search(snapshot, query: np.ndarray, depth: int, allowed_rows=None):
    """dense_search, asserting that each hit is a live chunk scored by its own vector: a
    removed chunk's vector passed off under another row would show as a score mismatch."""
    hits = snapshot.dense_search(query, depth, allowed_rows=allowed_rows)
    rows = [row for row, _ in hits]
    assert len(set(rows)) == len(rows)
    if hits:
        vectors = snapshot.vectors_for_ids(snapshot.ids[np.array(rows)])
        expected = vectors @ query
        assert np.allclose([score for _, score in hits], expected, atol=1e-5)
    return hits


def all_ids_found(snapshot, query_vectors: np.ndarray) -> set[int]:
    """Every chunk id any query returns, at full depth."""
    found = set()
    for vector in query_vectors:
        for row, _ in checked_search(snapshot, vector, depth=len(snapshot)):
            found.add(int(snapshot.ids[row]))
    return found


def test_dense_settings_switch_above_threshold():
    assert dense_settings_for(100, approximate_above=100) == {"kind": "flat"}
    hnsw = dense_settings_for(101, approximate_above=100, m=16, ef_construction=40, ef_search=50)
    assert hnsw == {"kind": "hnsw", "m": 16, "ef_construction": 40, "ef_search": 50,
                    "tombstones": []}
    assert same_graph(hnsw, {**hnsw, "ef_search": 200, "tombstones": [1]})
    assert not same_graph(hnsw, {**hnsw, "m": 32})
    assert not same_graph({"kind": "flat"}, {"kind": "flat"})


def test_small_index_stays_exact(tmp_path):
    issue = write_issue(tmp_path / "a.jsonl", 6)
    ingestor(tmp_path / "index", approximate_above=10).ingest([issue])
    snapshot = IndexStore(tmp_path / "index").load()
    assert snapshot.manifest.dense == {"kind": "flat"}
    assert len(snapshot) == 6


def test_crossing_the_threshold_switches_to_hnsw(tmp_path):
    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 6)])
    assert IndexStore(index_dir).read_manifest().dense["kind"] == "flat"

    ingestor(index_dir).ingest([write_issue(tmp_path / "b.jsonl", 8)])
    snapshot = IndexStore(index_dir).load()
    assert snapshot.manifest.dense == {"kind": "hnsw", "m": 8, "ef_construction": 40,
                                       "ef_search": 64, "tombstones": []}
    inner = faiss.downcast_index(snapshot.dense.index)
    assert type(inner).__name__ == "IndexHNSWFlat" and inner.hnsw.efConstruction == 40
    assert snapshot.dense.ntotal == len(snapshot) == 14
    # Every chunk is found by its own text (the graph is small: the search is exhaustive).
    embedder = FakeEmbedder()
    for row, chunk in enumerate(snapshot.chunks):
        query = embedder.encode_queries([chunk.embed_text])[0]
        best_row, score = checked_search(snapshot, query, 1)[0]
        assert best_row == row and score == pytest.approx(1.0, abs=1e-5)


def test_adds_extend_the_graph_instead_of_rebuilding(tmp_path, monkeypatch):
    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 12)])
    before = IndexStore(index_dir).load()
    assert before.manifest.dense["kind"] == "hnsw"

    built = []
    original = index_module.build_dense_index
    monkeypatch.setattr(index_module, "build_dense_index",
                        lambda *a, **k: built.append(a[2]) or original(*a, **k))
    report = ingestor(index_dir).ingest([write_issue(tmp_path / "b.jsonl", 5)])
    assert report.chunks_embedded == 5
    assert built == []  # no index was built from scratch: the stored graph was extended
    after = IndexStore(index_dir).load()
    assert after.manifest.dense["kind"] == "hnsw" and after.manifest.dense["tombstones"] == []
    assert after.dense.ntotal == len(after) == 17
    # The old graph's vectors are carried over unchanged, under the same ids.
    old_ids = before.ids
    assert np.array_equal(after.vectors_for_ids(old_ids), before.vectors_for_ids(old_ids))
    embedder = FakeEmbedder()
    new_rows = [row for row, chunk in enumerate(after.chunks) if chunk.issue == "b"]
    for row in new_rows:
        query = embedder.encode_queries([after.chunks[row].embed_text])[0]
        assert after.dense_search(query, 1)[0][0] == row


def test_replaced_and_removed_chunks_are_never_returned(tmp_path):
    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 4),
                                write_issue(tmp_path / "b.jsonl", 30)])
    before = IndexStore(index_dir).load()
    assert before.manifest.dense["kind"] == "hnsw"
    replaced = {int(i) for i, c in zip(before.ids, before.chunks, strict=True)
                if c.article_id == "b-3"}
    old_vectors = before.vectors_for_ids(np.array(sorted(replaced)))

    # Re-ingest issue b with article 3 changed: its old chunk becomes a tombstone.
    report = ingestor(index_dir).ingest([write_issue(tmp_path / "b.jsonl", 30, edited=3)])
    assert report.updated == 1 and report.chunks_embedded == 1
    after = IndexStore(index_dir).load()
    assert set(after.manifest.dense["tombstones"]) == replaced
    assert after.dense.ntotal == len(after) + len(replaced)
    assert not replaced & set(after.ids.tolist())
    # The old chunk's own vector, asked for at every depth: the tombstone is never returned.
    found = all_ids_found(after, old_vectors)
    assert found and not found & replaced
    assert found <= set(after.ids.tolist())
    # Tombstones are skipped inside the search, so the depth asked for is still filled.
    assert len(checked_search(after, old_vectors[0], len(after))) == len(after)
    # Nor through a zone filter (exact over the zone's rows).
    zone = before.chunks[int(np.searchsorted(before.ids, min(replaced)))].zone
    rows = after.rows_in_zone(zone)
    hits = checked_search(after, old_vectors[0], len(after), allowed_rows=rows)
    assert {int(after.ids[row]) for row, _ in hits} == {int(after.ids[row]) for row in rows}

    # Removing a small issue: more tombstones, still under the rebuild fraction.
    ingestor(index_dir).ingest([write_issue(tmp_path / "c.jsonl", 40)])
    with_c = IndexStore(index_dir).load()
    a_ids = {int(i) for i, c in zip(with_c.ids, with_c.chunks, strict=True) if c.issue == "a"}
    ingestor(index_dir).remove_issue("a")
    removed = IndexStore(index_dir).load()
    assert len(a_ids) + len(replaced) <= TOMBSTONE_REBUILD_FRACTION * len(removed)
    assert set(removed.manifest.dense["tombstones"]) == replaced | a_ids
    embedder = FakeEmbedder()
    queries = embedder.encode_queries([c.embed_text for c in with_c.chunks if c.issue == "a"])
    found = all_ids_found(removed, queries)
    assert not found & (replaced | a_ids)
    assert all(removed.chunks[row].issue != "a"
               for row, _ in checked_search(removed, queries[0], 10))


def test_many_removals_rebuild_the_graph_clean(tmp_path):
    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 20),
                                write_issue(tmp_path / "b.jsonl", 20)])
    ingestor(index_dir).remove_issue("b")  # half the index: far above the rebuild fraction
    snapshot = IndexStore(index_dir).load()
    assert snapshot.manifest.dense["kind"] == "hnsw"
    assert snapshot.manifest.dense["tombstones"] == []
    assert snapshot.dense.ntotal == len(snapshot) == 20


def test_shrinking_below_the_threshold_goes_back_to_exact(tmp_path):
    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 6),
                                write_issue(tmp_path / "b.jsonl", 8)])
    assert IndexStore(index_dir).read_manifest().dense["kind"] == "hnsw"
    ingestor(index_dir).remove_issue("b")
    snapshot = IndexStore(index_dir).load()
    assert snapshot.manifest.dense == {"kind": "flat"}
    assert snapshot.dense.ntotal == len(snapshot) == 6


def test_rebuild_keeps_the_kind_for_the_size(tmp_path):
    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 12)])
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 12, edited=0)])
    assert IndexStore(index_dir).read_manifest().dense["tombstones"]
    ingestor(index_dir).rebuild()
    snapshot = IndexStore(index_dir).load()
    assert snapshot.manifest.dense["kind"] == "hnsw"
    assert snapshot.manifest.dense["tombstones"] == []
    assert snapshot.dense.ntotal == len(snapshot) == 12


def test_a_graph_missing_vectors_is_reported_corrupt(tmp_path):
    from qa_bot.index import IndexCorrupt

    index_dir = tmp_path / "index"
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 12)])
    ingestor(index_dir).ingest([write_issue(tmp_path / "a.jsonl", 12, edited=0)])
    store = IndexStore(index_dir)
    manifest_path = store.snapshots_dir / store.current_name() / "manifest.json"
    data = json.loads(manifest_path.read_text(encoding="utf-8"))
    data["dense"]["tombstones"] = []  # the graph holds one vector more than the table says
    manifest_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="removed"):
        store.load()
