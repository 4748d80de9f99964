"""The index layer alone at 10k, 100k and 1M chunks: exact vs HNSW dense search, and BM25.

    .venv/bin/python -m bench.scale                         # 10k, 100k, 1M (~15 min on 2 cores)
    .venv/bin/python -m bench.scale --sizes 2000,20000      # a smoke run
    .venv/bin/python -m bench.scale --kinds flat,hnsw,ivf   # IVF too, for comparison

Dense: synthetic L2-normalised vectors of the model's dimension (384), *clustered* the way
sentence embeddings are — every vector shares a common direction (e5 vectors of unrelated
Chinese passages have cosine ≈ 0.7), each belongs to one of n/100 topics, plus noise — and
queries drawn the same way. Uniformly random vectors would be the worst case for HNSW recall
and unlike any real corpus. Both indexes are built by the product's own
`qa_bot.index.build_dense_index` with the settings the product records in the manifest
(`dense_settings_for`), and searched through `Snapshot.dense_search` (the product's query
path: one question at a time, tombstone filter and row mapping included). Recall@10 is
against the exact top 10 of the same queries. Memory is the serialized index size (what is
loaded) and the resident-memory growth of building it.

BM25: synthetic token lists with a Zipfian vocabulary (Heaps' law sizes, ~60 tokens a chunk,
like jieba search tokens of a 200-token chunk), indexed by `qa_bot.lexical.LexicalIndex.build`
(bm25s), saved, and loaded back by `LexicalIndex.load` (what `qa-bot ask` does); queries of 6
tokens drawn from the same distribution.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    current_rss_mb,
    log,
    print_machine,
    print_section,
    summarize_ms,
    table,
    write_json,
)

DIMENSION = 384


# -- data --------------------------------------------------------------------------------------
def clustered_vectors(n: int, seed: int, topics: int | None = None) -> np.ndarray:
    """n normalised vectors: 0.8·common + 0.45·topic + 0.4·noise (cos ≈ 0.64 across topics,
    ≈ 0.84 within one; vectors of one topic still differ in every direction)."""
    rng = np.random.default_rng(seed)
    topics = topics or max(10, n // 100)
    common = _unit(np.random.default_rng(12345).standard_normal(DIMENSION, dtype=np.float32))
    centres = _unit(np.random.default_rng(54321).standard_normal((topics, DIMENSION),
                                                                  dtype=np.float32))
    out = np.empty((n, DIMENSION), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        noise = _unit(rng.standard_normal((stop - start, DIMENSION), dtype=np.float32))
        topic = rng.integers(0, topics, stop - start)
        block = 0.8 * common + 0.45 * centres[topic] + 0.4 * noise
        out[start:stop] = _unit(block)
    return out


def hierarchical_vectors(n: int, seed: int, structure_n: int | None = None) -> np.ndarray:
    """Harder than `clustered_vectors`: broad topics of ~2,000 chunks (more than HNSW's search
    breadth, so it cannot simply sweep the right cluster), each made of sub-topics of ~20.
    `structure_n`: draw from the topic tables of a corpus of that size (for its queries)."""
    rng = np.random.default_rng(seed)
    size = structure_n or n
    topics, subtopics = max(5, size // 2000), max(10, size // 20)
    common = _unit(np.random.default_rng(12345).standard_normal(DIMENSION, dtype=np.float32))
    centres = _unit(np.random.default_rng(54321).standard_normal((topics, DIMENSION),
                                                                  dtype=np.float32))
    sub_rng = np.random.default_rng(999)
    sub_centres = _unit(sub_rng.standard_normal((subtopics, DIMENSION), dtype=np.float32))
    sub_topic = sub_rng.integers(0, topics, subtopics)
    out = np.empty((n, DIMENSION), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        noise = _unit(rng.standard_normal((stop - start, DIMENSION), dtype=np.float32))
        sub = rng.integers(0, subtopics, stop - start)
        block = (0.8 * common + 0.4 * centres[sub_topic[sub]] + 0.3 * sub_centres[sub]
                 + 0.3 * noise)
        out[start:stop] = _unit(block)
    return out


def uniform_vectors(n: int, seed: int) -> np.ndarray:
    """The worst case for HNSW: no structure at all."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIMENSION), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = _unit(rng.standard_normal((stop - start, DIMENSION), dtype=np.float32))
    return out


def make_vectors(kind: str, n: int, seed: int, queries_for: int | None = None) -> np.ndarray:
    """`n` vectors of the data kind; queries_for=N: queries from the same topics as size N."""
    if kind == "clustered":
        return clustered_vectors(n, seed, topics=max(10, (queries_for or n) // 100))
    if kind == "hierarchical":
        return hierarchical_vectors(n, seed, structure_n=queries_for)
    return uniform_vectors(n, seed)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def zipf_token_lists(n: int, seed: int) -> tuple[list[list[str]], list[str], np.ndarray]:
    """n token lists over a Zipfian vocabulary; returns lists, vocabulary, word probabilities."""
    rng = np.random.default_rng(seed)
    vocabulary_size = int(min(400_000, 40 * n ** 0.6 + 2_000))  # Heaps' law, roughly jieba's
    vocabulary = [f"w{i}" for i in range(vocabulary_size)]
    weights = 1.0 / np.arange(1, vocabulary_size + 1) ** 1.05
    probabilities = weights / weights.sum()
    lengths = np.maximum(1, rng.poisson(60, n))
    words = rng.choice(vocabulary_size, size=int(lengths.sum()), p=probabilities)
    lists, position = [], 0
    for length in lengths:
        lists.append([vocabulary[w] for w in words[position:position + length]])
        position += length
    return lists, vocabulary, probabilities


# -- dense -------------------------------------------------------------------------------------
def product_dense_settings(kind: str, args) -> dict:
    from qa_bot.index import dense_settings_for

    if kind == "flat":
        return dense_settings_for(1, approximate_above=1)
    return dense_settings_for(2, approximate_above=1, m=args.hnsw_m,
                              ef_construction=args.ef_construction, ef_search=args.ef_search)


def snapshot_over(index, n: int, dense: dict):
    """A Snapshot holding only a dense index (the product's search path, no chunks)."""
    from qa_bot.index import Manifest, Snapshot

    manifest = Manifest(model={"dimension": DIMENSION}, chunker={}, lexical={}, dense=dense)
    return Snapshot("bench", manifest, [None] * n, np.arange(n, dtype=np.int64), [], {},
                    index, lexical=None)


def serialized_mb(index) -> float:
    import faiss

    return faiss.serialize_index(index).nbytes / 1e6


def dense_rows(n: int, args, queries: np.ndarray) -> list[dict]:
    import faiss

    from qa_bot.index import build_dense_index

    log(f"dense {n:,}: generating {args.data} vectors")
    vectors = make_vectors(args.data, n, seed=n)
    ids = np.arange(n, dtype=np.int64)
    rows = []
    truth = None
    for kind in args.kinds:
        gc.collect()
        rss_before = current_rss_mb()
        log(f"dense {n:,}: building {kind}")
        started = time.perf_counter()
        if kind == "ivf":
            index, dense = build_ivf(vectors, ids, args)
        else:
            dense = product_dense_settings(kind, args)
            index = build_dense_index(vectors, ids, dense)
        build_s = time.perf_counter() - started
        rss_growth = current_rss_mb() - rss_before
        size_mb = serialized_mb(index)
        snapshot = snapshot_over(index, n, dense) if kind != "ivf" else None
        if truth is None:
            # Exact top 10 of every query, in one batched search (flat is built first).
            exact = faiss.IndexFlatIP(DIMENSION)
            exact.add(vectors)
            _, truth = exact.search(queries, 10)
            del exact
        sweep = [args.ef_search] + [e for e in args.ef_sweep if e != args.ef_search]
        settings_list = sweep if kind in ("hnsw",) else (args.nprobe if kind == "ivf" else [None])
        for setting in settings_list:
            if kind == "hnsw":
                dense = {**dense, "ef_search": setting}
                snapshot = snapshot_over(index, n, dense)
            search = _searcher(kind, index, snapshot, setting)
            search(queries[0])  # warm
            times, found = [], []
            for query in queries:
                started = time.perf_counter()
                result = search(query)
                times.append(time.perf_counter() - started)
                found.append(result)
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth,
                                                                               strict=True)]))
            label = {"flat": "flat (exact)", "hnsw": f"hnsw ef_search={setting}",
                     "ivf": f"ivf nprobe={setting}"}[kind]
            if kind == "hnsw" and setting == args.ef_search:
                label += " (product)"
            rows.append({
                "chunks": n, "index": label, **{k: v for k, v in summarize_ms(times).items()
                                                if k in ("p50_ms", "p95_ms")},
                "recall@10": recall, "build_s": build_s, "size_mb": size_mb,
                "rss_growth_mb": rss_growth,
            })
            log(f"  {label}: p50 {rows[-1]['p50_ms']:.2f} ms, recall@10 {recall:.3f}")
        del index, snapshot
    return rows


def real_rows(index_dir: Path, questions: Path | None, args) -> list[dict]:
    """Exact vs HNSW on a real index's vectors (e.g. the news index): recall on real data."""
    import faiss

    from qa_bot.index import IndexStore, build_dense_index

    snapshot = IndexStore(index_dir).load()
    vectors = snapshot.vectors_for_ids(snapshot.ids)
    n = len(vectors)
    if questions is not None:
        from bench.common import bench_settings
        from qa_bot.embedding import SentenceTransformerEmbedder

        texts = [json.loads(line)["question"] for line in questions.open(encoding="utf-8")
                 if line.strip()]
        embedder = SentenceTransformerEmbedder(bench_settings(index_dir).model,
                                               show_progress=False)
        queries = embedder.encode_queries(texts)
        source = f"{len(texts)} real questions ({questions.name})"
    else:
        picked = np.random.default_rng(3).choice(n, min(n, args.queries), replace=False)
        queries = vectors[picked]
        source = f"{len(picked)} of its own chunk vectors"
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    del exact
    rows = []
    for kind in ("flat", "hnsw"):
        dense = product_dense_settings(kind, args)
        started = time.perf_counter()
        index = build_dense_index(vectors, snapshot.ids, dense)
        build_s = time.perf_counter() - started
        for setting in ([args.ef_search, *args.ef_sweep] if kind == "hnsw" else [None]):
            if setting is not None:
                dense = {**dense, "ef_search": setting}
            view = snapshot_over(index, n, dense)
            view.ids = snapshot.ids
            times, recalls = [], []
            for query, expected in zip(queries, truth, strict=True):
                started = time.perf_counter()
                found = [int(snapshot.ids[row]) for row, _ in view.dense_search(query, 10)]
                times.append(time.perf_counter() - started)
                wanted = {int(snapshot.ids[i]) for i in expected if i >= 0}
                recalls.append(len(set(found) & wanted) / max(1, len(wanted)))
            rows.append({"chunks": n, "index": "flat (exact)" if kind == "flat"
                         else f"hnsw ef_search={setting}", "queries": source,
                         **{k: v for k, v in summarize_ms(times).items()
                            if k in ("p50_ms", "p95_ms")},
                         "recall@10": float(np.mean(recalls)), "build_s": build_s})
    return rows


def _searcher(kind: str, index, snapshot, setting):
    if kind == "ivf":
        index.nprobe = setting

        def search_ivf(query):
            _, found = index.search(query.reshape(1, -1), 10)
            return found[0].tolist()
        return search_ivf

    def search(query):
        return [row for row, _ in snapshot.dense_search(query, 10)]
    return search


def build_ivf(vectors: np.ndarray, ids: np.ndarray, args):
    import faiss

    n = len(vectors)
    nlist = int(max(16, 4 * np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(DIMENSION)
    index = faiss.IndexIVFFlat(quantizer, DIMENSION, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = vectors[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
    index.train(sample)
    index.add_with_ids(vectors, ids)
    return index, {"kind": "ivf", "nlist": nlist}


# -- BM25 --------------------------------------------------------------------------------------
def bm25_row(n: int, queries: int) -> dict:
    from qa_bot.lexical import LexicalIndex

    log(f"bm25 {n:,}: generating token lists")
    lists, vocabulary, probabilities = zipf_token_lists(n, seed=n + 1)
    gc.collect()
    log(f"bm25 {n:,}: building")
    started = time.perf_counter()
    built = LexicalIndex.build(lists)
    build_s = time.perf_counter() - started
    del lists
    directory = Path(tempfile.mkdtemp(prefix="bench-bm25-"))
    try:
        built.save(directory)
        del built
        gc.collect()
        on_disk = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        rss_before = current_rss_mb()
        started = time.perf_counter()
        index = LexicalIndex.load(directory)
        load_s = time.perf_counter() - started
        rss_growth = current_rss_mb() - rss_before
        rng = np.random.default_rng(7)
        query_lists = [
            [vocabulary[w] for w in rng.choice(len(vocabulary), 6, p=probabilities)]
            for _ in range(queries)
        ]
        index.search(query_lists[0], 50)
        times = []
        for query in query_lists:
            started = time.perf_counter()
            index.search(query, 50)
            times.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stats = summarize_ms(times)
    log(f"  bm25: p50 {stats['p50_ms']:.2f} ms")
    return {"chunks": n, "vocabulary": len(vocabulary), "p50_ms": stats["p50_ms"],
            "p95_ms": stats["p95_ms"], "build_s": build_s, "load_s": load_s,
            "on_disk_mb": on_disk, "rss_growth_mb": rss_growth}


def main(argv: list[str] | None = None) -> int:
    from qa_bot.config import RetrievalSettings

    defaults = RetrievalSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated chunk counts (default 10k,100k,1M)")
    parser.add_argument("--kinds", default="flat,hnsw", help="flat,hnsw[,ivf]")
    parser.add_argument("--data", choices=("clustered", "hierarchical", "uniform"),
                        default="clustered", help="synthetic vectors (see the docstring)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-m", type=int, default=defaults.hnsw_m)
    parser.add_argument("--ef-construction", type=int, default=defaults.hnsw_ef_construction)
    parser.add_argument("--ef-search", type=int, default=defaults.hnsw_ef_search)
    parser.add_argument("--ef-sweep", default="64,256",
                        help="other ef_search values to measure on the same graph")
    parser.add_argument("--nprobe", default="16,64", help="IVF nprobe values (with --kinds ivf)")
    parser.add_argument("--no-bm25", action="store_true")
    parser.add_argument("--no-dense", action="store_true", help="BM25 only")
    parser.add_argument("--threads", type=int, default=0,
                        help="faiss OpenMP threads (0: one per core, as the product)")
    parser.add_argument("--real-index", type=Path,
                        help="also: exact vs HNSW on this index's real vectors")
    parser.add_argument("--real-questions", type=Path,
                        help="questions (JSONL with `question`) to query the real index with")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    args.sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.ef_sweep = [int(e) for e in args.ef_sweep.split(",") if e]
    args.nprobe = [int(e) for e in args.nprobe.split(",") if e]
    if "flat" not in args.kinds:
        args.kinds.insert(0, "flat")
    args.kinds.sort(key=["flat", "hnsw", "ivf"].index)

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print_machine("scale: the index layer alone")
    print(f"faiss: builds on {faiss.omp_get_max_threads()} threads, searches on 1 (as the "
          f"product: Snapshot.dense_search); HNSW M={args.hnsw_m}, "
          f"ef_construction={args.ef_construction}; {args.queries} queries per row, "
          f"one at a time; {args.data} synthetic vectors (see the docstring)")
    print()
    started = time.perf_counter()
    dense, lexical = [], []
    for n in args.sizes:
        # The queries come from the same topics as the data of that size.
        queries = make_vectors(args.data, args.queries, seed=10_000 + n, queries_for=n)
        if not args.no_dense:
            dense.extend(dense_rows(n, args, queries))
        if not args.no_bm25:
            lexical.append(bm25_row(n, args.queries))
        gc.collect()
    if dense:
        print_section("Dense search, one query at a time (top 10):", table(
            dense, ["chunks", "index", "p50_ms", "p95_ms", "recall@10", "build_s", "size_mb",
                    "rss_growth_mb"]))
    if lexical:
        print_section(
            "BM25 (LexicalIndex: bm25s build, direct load), top 50 of 6-token queries:",
            table(lexical, ["chunks", "vocabulary", "p50_ms", "p95_ms", "build_s", "load_s",
                            "on_disk_mb", "rss_growth_mb"]))
    real = []
    if args.real_index:
        log(f"real vectors from {args.real_index}")
        real = real_rows(args.real_index, args.real_questions, args)
        print_section("Real embeddings (multilingual-e5-small vectors of an ingested corpus):",
                      table(real, ["chunks", "index", "queries", "p50_ms", "p95_ms",
                                   "recall@10", "build_s"]))
    print(f"total {time.perf_counter() - started:.0f} s; load average now "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    write_json(args.json, {"dense": dense, "bm25": lexical, "real": real})
    return 0


if __name__ == "__main__":
    sys.exit(main())
