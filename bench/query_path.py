"""The query path: warm `QAService.answer()` against the bare encode of the question, and cold
start (process start to the first answer printed by `qa-bot ask`).

    .venv/bin/python -m bench.query_path                    # 10k-chunk index (built once, cached)
    .venv/bin/python -m bench.query_path --chunks 300 --rounds 2 --cold-runs 1   # a smoke run
    .venv/bin/python -m bench.query_path --before /tmp/qa-before   # cold start of old code too

The index: synthetic bulletin issues recombined from the seed issue's sentences
(bench/synth.py) plus the seed issue itself, ingested by the real `Ingestor` until it holds
about --chunks chunks. Embedding 10k chunks takes ~10 min on 2 cores, so the index is built once
into ~/.cache/qa-bot/bench/query-<chunks>/ and reused while the generator, the model
fingerprint and the chunker settings are unchanged (delete the folder to rebuild).

Warm latency: for each question, `embedder.encode_queries([q])` (the floor: the same model
with the same thread settings, as the answer path calls it) and `service.answer(q)` are timed
back to back, round after round, so both see the same machine load; the ratio of the medians is
the figure. Then sentence-transformers' own `model.encode(q)` (torch) on the same weights, for
reference. Then where an answer's time goes (encode, dense search, BM25, the rest) and a
cProfile of the answers.

Cold start: `qa-bot --index-dir INDEX ask QUESTION` as a subprocess, timed from spawn to the
first line of the answer on stdout, and its CPU time (user + sys, which machine load does not
inflate); --profile prints what dominates it (cProfile of one cold run).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.common import (
    CACHE_DIR,
    REPO_ROOT,
    bench_settings,
    fenced,
    log,
    peak_rss_mb,
    percentile,
    print_machine,
    print_section,
    summarize_ms,
    table,
    write_json,
)

# Questions about the seed issue (written for this benchmark), in the staff's styles.
QUESTIONS = [
    "广灵经开区有多少家再生金属企业？",
    "侯马经济开发区召开的调度会是第几次？",
    "谁在运城经开区调研了重点项目建设？",
    "沁源县化工园区建设推进会由谁出席并讲话？",
    "临汾经济开发区科技活动周的主题是什么？",
    "左云经济技术开发区清退了几家无投资意愿企业？",
    "文水经济开发区如何开展安全生产专项行动？",
    "祁县经济开发区开展了什么警示教育？",
    "长治经开区为企业举办了什么讲座？",
    "上党经开区的陈华去哪里考察学习了？",
    "再生金属产业对广灵的工业总产值贡献有多大？",
    "开发区如何优化营商环境？",
]


# -- the index ---------------------------------------------------------------------------------
def ensure_index(chunks: int, cache_dir: Path, embedder, rebuild: bool = False) -> tuple[Path,
                                                                                        dict]:
    """The cached index of about `chunks` chunks, built if missing or stale."""
    from bench.synth import GENERATOR_VERSION, articles_for_chunks, write_issues
    from qa_bot.config import ChunkingSettings
    from qa_bot.ingest import Ingestor

    precision = embedder.precision  # an index is refused at another precision
    home = cache_dir / (f"query-{chunks}" + ("" if precision == "fp32" else f"-{precision}"))
    index_dir, meta_path = home / "index", home / "meta.json"
    chunking = ChunkingSettings()
    wanted = {
        "generator": GENERATOR_VERSION,
        "target_chunks": chunks,
        "fingerprint": embedder.fingerprint(),
        "precision": precision,
        "chunker": [chunking.max_tokens, chunking.overlap_sentences],
    }
    if not rebuild and meta_path.exists() and (index_dir / "CURRENT").exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta.setdefault("precision", "fp32")  # built before the setting existed
        if {k: meta.get(k) for k in wanted} == wanted:
            return index_dir, meta
    log(f"building the {chunks}-chunk index in {home} (once; ~20 chunks/s on 2 idle cores)")
    shutil.rmtree(home, ignore_errors=True)
    rows = articles_for_chunks(chunks, embedder.count_tokens)
    write_issues(home / "corpus", rows, fmt="jsonl", include_seed=True)
    settings = bench_settings(index_dir)
    started = time.perf_counter()
    report = Ingestor(settings, embedder, show_progress=False).ingest([home / "corpus"])
    meta = {**wanted, "chunks": report.chunks_total, "articles": report.added,
            "ingest_seconds": round(time.perf_counter() - started, 1),
            "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return index_dir, meta


# -- warm --------------------------------------------------------------------------------------
def warm(service, rounds: int) -> dict:
    embedder = service.embedder
    for question in QUESTIONS[:3]:  # first calls fill caches (zone rows, jieba, BLAS buffers)
        service.answer(question)
        embedder.encode_queries([question])
    encode_s, answer_s = [], []
    for _ in range(rounds):
        for question in QUESTIONS:
            started = time.perf_counter()
            embedder.encode_queries([question])
            encode_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            service.answer(question)
            answer_s.append(time.perf_counter() - started)
    return {"encode": summarize_ms(encode_s), "answer": summarize_ms(answer_s),
            "ratios": [a / e for a, e in zip(answer_s, encode_s, strict=True)]}


def breakdown(service, rounds: int) -> list[dict]:
    """Time of each stage of the answer path, called as the service calls them."""
    loaded = service.loaded
    retriever, snapshot = loaded.retriever, loaded.snapshot
    settings = service.settings.retrieval
    stages: dict[str, list[float]] = {k: [] for k in
                                      ("encode question", "dense search", "BM25 (tokenize+search)",
                                       "answer() total")}
    for _ in range(rounds):
        for question in QUESTIONS:
            t0 = time.perf_counter()
            vector = service.embedder.encode_queries([question])[0]
            t1 = time.perf_counter()
            snapshot.dense_search(vector, settings.dense_depth)
            t2 = time.perf_counter()
            tokens = retriever.tokenizer.tokenize(question)
            snapshot.lexical.search(tokens, settings.lexical_depth)
            t3 = time.perf_counter()
            service.answer(question)
            t4 = time.perf_counter()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stages[key].append(value)
    rows = [{"stage": k, **summarize_ms(v)} for k, v in stages.items()]
    total = statistics.median(stages["answer() total"])
    accounted = sum(statistics.median(stages[k]) for k in list(stages)[:3])
    rows.append({"stage": "rest (fusion, zones, answer sentence)", "p50_ms":
                 (total - accounted) * 1000})
    return rows


def profile_answers(service, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for question in QUESTIONS * 3:
        service.answer(question)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return _trim_profile(out.getvalue())


def _trim_profile(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line.replace(str(REPO_ROOT) + "/", "").replace(sys.prefix + "/", "")
                     for line in lines[start:] if line.strip())


def sentence_transformers_reference(embedder, rounds: int) -> dict:
    """sentence-transformers' `model.encode(question)` on the same folder (torch), with the
    question path's thread setting: one thread (two threads are slower for one short text,
    and much slower on a busy machine)."""
    model = embedder.model  # loads torch + sentence-transformers
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    prompt = embedder.settings.query_prompt
    for question in QUESTIONS[:3]:
        model.encode([question], prompt=prompt, normalize_embeddings=True)
    times = []
    for _ in range(rounds):
        for question in QUESTIONS:
            started = time.perf_counter()
            model.encode([question], prompt=prompt, normalize_embeddings=True,
                         show_progress_bar=False)
            times.append(time.perf_counter() - started)
    used = torch.get_num_threads()
    torch.set_num_threads(threads)
    return {**summarize_ms(times), "threads": used}


# -- cold --------------------------------------------------------------------------------------
def cold_start(index_dir: Path, runs: int, code_dir: Path = REPO_ROOT) -> dict:
    """Spawn `python -m qa_bot ask` `runs` times: wall to first answer line, and CPU time."""
    # Each checkout with its own settings file: an older one rejects newer settings.
    env = {**os.environ, "PYTHONPATH": str(code_dir), "QA_BOT_CONFIG":
           str(code_dir / "config" / "qa-bot.toml")}
    command = [sys.executable, "-m", "qa_bot", "--index-dir", str(index_dir), "ask",
               QUESTIONS[0]]
    first_line, total, cpu = [], [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   cwd=code_dir, env=env)
        line = process.stdout.readline()
        first = time.perf_counter() - started
        _, err = process.communicate()
        done = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0 or not line:
            raise SystemExit(f"qa-bot ask failed ({process.returncode}): {err.decode()[-800:]}")
        first_line.append(first)
        total.append(done)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return {
        "runs": runs,
        "first_answer_s_p50": statistics.median(first_line),
        "first_answer_s_min": min(first_line),
        "exit_s_p50": statistics.median(total),
        "cpu_s_p50": statistics.median(cpu),
        "peak_rss_mb": peak_rss_mb(children=True),
    }


def profile_cold(index_dir: Path, top: int) -> str:
    """cProfile of one cold `qa-bot ask`, by cumulative time, qa_bot frames and big imports."""
    out = Path(f"/tmp/qa-bot-cold-{os.getpid()}.prof")
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "qa_bot",
                    "--index-dir", str(index_dir), "ask", QUESTIONS[0]],
                   capture_output=True, cwd=REPO_ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("cumulative").print_stats(r"qa_bot/|built-in method (marshal|from_file)|"
                                               r"^.*__init__\.py:1\(<module>\)", top)
    out.unlink(missing_ok=True)
    return _trim_profile(text.getvalue())


def _engine(embedder) -> str:
    if embedder._onnx is not None:
        return f"onnxruntime {embedder.precision} (qa_bot.encoder)"
    return "sentence-transformers (torch)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000, help="index size (default 10k)")
    parser.add_argument("--rounds", type=int, default=10,
                        help=f"passes over the {len(QUESTIONS)} questions (default 10)")
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--rebuild", action="store_true", help="build the index again")
    parser.add_argument("--before", type=Path,
                        help="a checkout of older code (e.g. `git archive HEAD | tar -x -C "
                             "DIR`): its cold start is measured on the same index too")
    parser.add_argument("--profile", action="store_true", help="cProfile warm answers and a "
                        "cold start, print the top entries")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip sentence-transformers' encode (saves loading torch)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.service import QAService

    print_machine(f"query path: answer() vs encode, at {args.chunks:,} chunks")
    settings = bench_settings(Path("unused"))
    embedder = SentenceTransformerEmbedder(settings.model, show_progress=False)
    embedder.warm_up()
    index_dir, meta = ensure_index(args.chunks, args.cache_dir, embedder, args.rebuild)
    settings = bench_settings(index_dir)
    print(f"index: {index_dir}: {meta['chunks']:,} chunks, {meta['articles']:,} articles "
          f"(built {meta['built']} in {meta['ingest_seconds']:.0f} s)")
    service = QAService(settings, embedder=embedder)
    service.warm_up()
    print(f"dense index: {service.snapshot.manifest.dense.get('kind')}; encoder: "
          f"{_engine(embedder)}"
          f"; questions: {len(QUESTIONS)} × {args.rounds} rounds")
    print()

    log("warm: answer() vs encode, interleaved")
    result = warm(service, args.rounds)
    ratio = result["answer"]["p50_ms"] / result["encode"]["p50_ms"]
    rows = [
        {"measure": "encode_queries([q]) — the floor", **result["encode"]},
        {"measure": "QAService.answer(q)", **result["answer"]},
    ]
    reference = None
    if not args.no_reference:
        log("reference: sentence-transformers model.encode")
        reference = sentence_transformers_reference(embedder, max(2, args.rounds // 2))
        rows.append({"measure": f"sentence-transformers model.encode(q) "
                                f"(torch, {reference['threads']} thread)", **reference})
    if settings.reader.enabled and settings.answer.reader_windows:
        # The same path without the span reader: what the reader's windows cost.
        log("warm: answer() without the span reader vs encode, interleaved")
        plain = replace(settings, answer=replace(settings.answer, reader_windows=0))
        without = QAService(plain, embedder=embedder, reader=service.reader)
        without.warm_up()
        no_reader = warm(without, args.rounds)
        rows.append({"measure": f"QAService.answer(q), no span reader (encode p50 "
                                f"{no_reader['encode']['p50_ms']:.1f} ms in that run)",
                     **no_reader["answer"]})
        print(f"ratio answer/encode without the span reader: "
              f"{no_reader['answer']['p50_ms'] / no_reader['encode']['p50_ms']:.2f}; with it "
              f"({settings.answer.reader_windows} windows read): {ratio:.2f}")
    print(table(rows, ["measure", "n", "p50_ms", "p95_ms", "mean_ms"]))
    print()
    per_question = result["ratios"]
    print(f"ratio answer/encode: {ratio:.2f} (of medians; per-call median "
          f"{percentile(per_question, 50):.2f}, p95 {percentile(per_question, 95):.2f}); "
          "target ≤ 1.3")
    if reference:
        print(f"answer() / sentence-transformers encode: "
              f"{result['answer']['p50_ms'] / reference['p50_ms']:.2f}")
    print()
    stages = breakdown(service, max(1, args.rounds // 2))
    print_section("Where an answer's time goes:", table(stages, ["stage", "p50_ms", "p95_ms"]))
    if args.profile:
        print_section("cProfile of warm answers (top by own time):",
                      fenced(profile_answers(service, 15)))

    log("cold start: qa-bot ask in a fresh process")
    cold_rows = [{"code": "this checkout", **cold_start(index_dir, args.cold_runs)}]
    if args.before:
        cold_rows.append({"code": f"before ({args.before})",
                          **cold_start(index_dir, args.cold_runs, code_dir=args.before)})
    print_section(
        f"Cold start: `qa-bot --index-dir {index_dir} ask \"{QUESTIONS[0]}\"` "
        f"({args.cold_runs} runs; target ≤ 5 s to the first answer line):",
        table(cold_rows, ["code", "runs", "first_answer_s_p50", "first_answer_s_min",
                          "exit_s_p50", "cpu_s_p50"]))
    if args.profile:
        print_section("cProfile of one cold `qa-bot ask` (cumulative; qa_bot frames and imports):",
                      fenced(profile_cold(index_dir, 30)))
    write_json(args.json, {"meta": meta, "warm": {k: v for k, v in result.items()
                                                  if k != "ratios"},
                           "ratio": ratio, "reference": reference, "stages": stages,
                           "cold": cold_rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
