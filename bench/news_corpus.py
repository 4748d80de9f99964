"""A real large corpus: the news set (5,039 Chinese news articles) — full ingest, then eval.

    .venv/bin/python -m bench.news_corpus                     # build once (or reuse), then eval
    nohup .venv/bin/python -m bench.news_corpus --build-only > news-build.log 2>&1 &
    .venv/bin/python -m bench.news_corpus --limit 50          # a smoke run: 50 articles, temp index

The data set stays where it is (../shared/eval/news by default; --passages/--questions
override) and is read only when this runs. The full ingest (~30k chunks) takes tens of minutes
on 2 cores, so the index is kept in ~/.cache/qa-bot/bench/news-index (--index-dir) with the
figures of the run that built it (build.json beside it) and reused by later runs and by anyone
who wants a large real index (`qa-bot --index-dir ~/.cache/qa-bot/bench/news-index ask …`).
--rebuild builds it again.

Ingest goes through the real `Ingestor` (parse, chunk, embed, BM25, write), the eval through
`qa-bot eval --retriever all` (a subprocess, exactly as a user runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    CACHE_DIR,
    REPO_ROOT,
    bench_settings,
    log,
    peak_rss_mb,
    print_machine,
    print_section,
    table,
    write_json,
)

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "eval" / "news"
BUILD_RECORD = "build.json"


def build(passages: Path, index_dir: Path, limit: int | None) -> dict:
    """Ingest the passages into a fresh index with the real Ingestor; returns its figures."""
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.ingest import Ingestor

    source = passages
    scratch = None
    if limit:
        scratch = Path(tempfile.mkdtemp(prefix="news-bench-"))
        source = scratch / "news.jsonl"
        with passages.open(encoding="utf-8") as handle, source.open("w", encoding="utf-8") as out:
            for n, line in enumerate(handle):
                if n >= limit:
                    break
                out.write(line)
    if index_dir.exists():
        shutil.rmtree(index_dir)
    settings = bench_settings(index_dir)
    embedder = SentenceTransformerEmbedder(settings.model, show_progress=False)
    started = time.perf_counter()
    cpu_started = time.process_time()
    report = Ingestor(settings, embedder, show_progress=False).ingest([source])
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    if report.errors:
        raise SystemExit(f"ingest refused files: {[str(e) for e in report.errors]}")
    record = {
        "articles": report.added,
        "chunks": report.chunks_total,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "chunks_per_s": round(report.chunks_total / seconds, 2) if seconds else None,
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "warnings": len(report.warnings),
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cores": os.cpu_count(),
    }
    write_json(index_dir.parent / f"{index_dir.name}.{BUILD_RECORD}", record)
    return record


def run_eval(questions: Path, index_dir: Path, limit: int | None) -> list[dict]:
    command = [sys.executable, "-m", "qa_bot", "--index-dir", str(index_dir), "eval",
               str(questions), "--retriever", "all", "--json"]
    if limit:
        command += ["--limit", str(limit)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"qa-bot eval failed ({done.returncode}): {done.stderr[-2000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    results = results if isinstance(results, list) else [results]
    log(f"eval took {time.perf_counter() - started:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=Path, default=DEFAULT_DATA / "passages.jsonl")
    parser.add_argument("--questions", type=Path, default=DEFAULT_DATA / "questions.jsonl")
    parser.add_argument("--index-dir", type=Path, default=CACHE_DIR / "news-index")
    parser.add_argument("--rebuild", action="store_true", help="build the index again")
    parser.add_argument("--build-only", action="store_true", help="build (or reuse), no eval")
    parser.add_argument("--limit", type=int,
                        help="only the first N articles (and N questions), in a temporary index")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    for path in (args.passages, args.questions):
        if not path.is_file():
            print(f"bench.news_corpus: {path} not found (pass --passages / --questions)",
                  file=sys.stderr)
            return 2

    print_machine("news corpus: full ingest and eval")
    temporary = None
    index_dir = args.index_dir
    if args.limit:
        temporary = Path(tempfile.mkdtemp(prefix="news-bench-index-"))
        index_dir = temporary / "index"
    record_path = index_dir.parent / f"{index_dir.name}.{BUILD_RECORD}"
    try:
        if args.limit or args.rebuild or not (index_dir / "CURRENT").exists() or not (
            record_path.exists()
        ):
            log(f"ingesting {args.passages} into {index_dir} …")
            record = build(args.passages, index_dir, args.limit)
            reused = "built by this run"
        else:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            reused = f"reused, built {record.get('built')}"
        print(f"index: {index_dir} ({reused})")
        print()
        print(table([record], ["articles", "chunks", "seconds", "cpu_seconds", "chunks_per_s",
                               "peak_rss_mb", "built", "load_average_after"]))
        print()
        results: list[dict] = []
        if not args.build_only:
            results = run_eval(args.questions, index_dir, args.limit)
            print_section(f"`qa-bot eval {args.questions.name} --retriever all` on that index:",
                          table(results, ["retriever", "n", "recall@1", "recall@5", "mrr@10",
                                          "answer_hit", "answered_rate", "latency_ms_p50",
                                          "latency_ms_p95"]))
        write_json(args.json, {"ingest": record, "eval": results})
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
