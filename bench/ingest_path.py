"""The ingest path: chunks/second of the real `Ingestor` against the bare batched encode of the
same chunk texts, in one run; peak memory; where the rest of the time goes.

    .venv/bin/python -m bench.ingest_path                   # ~1,000 chunks of synthetic issues
    .venv/bin/python -m bench.ingest_path --chunks 60 --no-sandwich   # a smoke run

The input: synthetic bulletin issues in the bulletin's own text format (bench/synth.py: the
seed issue's sentences recombined under ~40 zones), so the real parser runs. The model is loaded
and warmed first, as in a long `qa-bot ingest`, and its load time is reported separately.

Measured back to back on the same process and machine state: the bare encode
(`embedder.encode_passages(texts)`: onnxruntime at `[model] precision`, batches sorted by
length, the same call the ingest makes) of exactly the chunk texts the ingest produces, then
`Ingestor.ingest()` of the issue files into an empty index (parse, chunk, embed, BM25, write,
fsync), then the bare encode again; the floor is the mean of the two encode passes. The ratio
ingest/encode throughput is the figure (target ≥ 0.85). Then each non-model stage is timed on
its own on the same input: that is what the ingest spends beyond the model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    bench_settings,
    current_rss_mb,
    log,
    peak_rss_mb,
    print_machine,
    print_section,
    table,
    write_json,
)


def chunk_texts(settings, embedder, files: list[Path]):
    """The chunks the ingest will make of these files (same parser, same chunker)."""
    from qa_bot.chunking import SentenceChunker
    from qa_bot.parsing import load_file

    chunking = settings.chunking
    chunker = SentenceChunker(chunking.max_tokens, chunking.overlap_sentences,
                              embedder.count_tokens)
    articles = [a for path in files for a in load_file(path)[0]]
    return articles, [c for a in articles for c in chunker.chunk(a)]


def bare_encode(embedder, texts: list[str]) -> float:
    """Seconds for the embedder's batched encode of texts (the call the ingest makes)."""
    started = time.perf_counter()
    embedder.encode_passages(texts)
    return time.perf_counter() - started


def stages(settings, embedder, files: list[Path], chunks, vectors) -> list[dict]:
    """Each non-model stage of the ingest, timed alone on the same input."""
    import numpy as np

    from qa_bot import lexical as lexical_module
    from qa_bot.index import IndexStore, Manifest
    from qa_bot.lexical import LexicalIndex, LexicalTokenizer
    from qa_bot.parsing import load_file
    from qa_bot.zones import ZoneTable

    rows = []

    def timed(name, fn):
        started = time.perf_counter()
        result = fn()
        rows.append({"stage": name, "seconds": time.perf_counter() - started})
        return result

    articles = timed("parse files", lambda: [a for p in files for a in load_file(p)[0]])
    pdfs = _as_pdfs(files)  # rendering is not timed: only reading them back is ingest's work
    if pdfs:
        timed("(the same issues as two-column PDFs: parse)",
              lambda: [a for p in pdfs for a in load_file(p)[0]])
    timed("chunk (sentences, token counts)", lambda: chunk_texts(settings, embedder, files))
    model_tokenizer = embedder.model.tokenizer
    slow = type("Counter", (), {"count_tokens": staticmethod(
        lambda text: len(model_tokenizer(text, add_special_tokens=False)["input_ids"]))})
    timed("(before: the same chunking, counting with transformers' tokenizer)",
          lambda: chunk_texts(settings, slow, files))
    zones = timed("zone table", lambda: ZoneTable.build(
        (a.zone for a in articles), texts=(a.title + "\n" + a.text for a in articles),
        alias_file=Path(settings.zone_aliases)))
    tokenizer = LexicalTokenizer(zones.words())
    lexical_module._BASE_DICTIONARY = None  # as in a fresh `qa-bot ingest` process
    timed("jieba dictionary load", tokenizer.warm_up)
    tokens = timed("BM25 tokens (jieba)", lambda: tokenizer.tokenize_many(
        c.embed_text for c in chunks))
    lexical = timed("BM25 build", lambda: LexicalIndex.build(tokens))
    scratch = Path(tempfile.mkdtemp(prefix="ingest-stage-"))
    try:
        store = IndexStore(scratch)
        manifest = Manifest(model={"dimension": vectors.shape[1]}, chunker={}, lexical={})
        ids = np.arange(len(chunks), dtype=np.int64)
        timed("write snapshot (FAISS, JSONL, BM25, fsync)", lambda: store.write(
            manifest, list(chunks), ids, tokens, vectors, articles, lexical=lexical))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _as_pdfs(files: list[Path]) -> list[Path]:
    """The issues rendered as two-column PDFs next to them (needs reportlab, a dev tool)."""
    try:
        from tests.format_fixtures import render_pdf
    except ImportError:
        log("reportlab not installed: PDF parse time not measured")
        return []
    return [render_pdf(path.read_text(encoding="utf-8"), path.with_suffix(".pdf"), columns=2)
            for path in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1000, help="about this many chunks")
    parser.add_argument("--no-sandwich", action="store_true",
                        help="one encode pass (before the ingest) instead of two")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from bench.synth import articles_for_chunks, write_issues
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.index import IndexStore
    from qa_bot.ingest import Ingestor

    print_machine(f"ingest path: Ingestor vs bare encode, ~{args.chunks:,} chunks")
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        settings = bench_settings(scratch / "index")
        embedder = SentenceTransformerEmbedder(settings.model, show_progress=False)
        started = time.perf_counter()
        embedder.warm_up()
        embedder.encode_passages(["预热"])  # the batch session (one thread per core)
        load_s = time.perf_counter() - started
        rows = articles_for_chunks(args.chunks, embedder.count_tokens, seed=7, with_seed=False)
        files = write_issues(scratch / "issues", rows, fmt="bulletin", include_seed=False)
        articles, chunks = chunk_texts(settings, embedder, files)
        texts = [c.embed_text for c in chunks]
        tokens_total = sum(embedder.count_tokens(t) for t in texts)
        log(f"{len(files)} issues, {len(articles)} articles, {len(chunks)} chunks "
            f"({tokens_total / len(chunks):.0f} tokens on average); model loaded in {load_s:.1f} s")

        rss_before = current_rss_mb()
        log("bare encode (1)")
        encode_s = [bare_encode(embedder, texts)]
        log("Ingestor.ingest()")
        started = time.perf_counter()
        report = Ingestor(settings, embedder, show_progress=False).ingest(files)
        ingest_s = time.perf_counter() - started
        rss_after = current_rss_mb()
        if not args.no_sandwich:
            log("bare encode (2)")
            encode_s.append(bare_encode(embedder, texts))
        snapshot = IndexStore(settings.index_path).load()
        same = sorted(c.embed_text for c in snapshot.chunks) == sorted(texts)
        if report.errors or not same:
            raise SystemExit(f"the ingest made other chunks than expected: {report.summary()}")

        encode_mean = sum(encode_s) / len(encode_s)
        n = report.chunks_total
        result = [
            {"measure": f"bare encode (encode_passages, {embedder.precision}, batched, sorted "
                        "by length)",
             "chunks": n, "seconds": encode_mean, "chunks_per_s": n / encode_mean,
             "passes": " / ".join(f"{s:.1f}" for s in encode_s)},
            {"measure": "qa-bot ingest (Ingestor.ingest: parse … write)", "chunks": n,
             "seconds": ingest_s, "chunks_per_s": n / ingest_s, "passes": f"{ingest_s:.1f}"},
        ]
        ratio = encode_mean / ingest_s
        print(table(result, ["measure", "chunks", "seconds", "chunks_per_s", "passes"]))
        print()
        print(f"ratio ingest/encode throughput: {ratio:.3f} (target ≥ 0.85); model load before "
              f"the run {load_s:.1f} s (not counted); peak RSS of this process "
              f"{peak_rss_mb():.0f} MB (model included), RSS {rss_before:.0f} → "
              f"{rss_after:.0f} MB over the ingest")
        print()
        log("stages alone")
        vectors = snapshot.vectors_for_ids(snapshot.ids)
        stage_rows = stages(settings, embedder, files, snapshot.chunks, vectors)
        overhead = sum(r["seconds"] for r in stage_rows if not r["stage"].startswith("("))
        for row in stage_rows:
            row["share_of_ingest"] = f"{row['seconds'] / ingest_s:.1%}"
        stage_rows.append({"stage": "all of the above (beyond the model)", "seconds": overhead,
                           "share_of_ingest": f"{overhead / ingest_s:.1%}"})
        print_section("What the ingest spends beyond the model (each stage alone, same input):",
                      table(stage_rows, ["stage", "seconds", "share_of_ingest"]))
        write_json(args.json, {"result": result, "ratio": ratio, "stages": stage_rows,
                               "model_load_s": load_s, "peak_rss_mb": peak_rss_mb()})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
