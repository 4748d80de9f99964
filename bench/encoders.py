"""The model runtimes side by side in one run (issue 12): the numpy encoder the project had
before, sentence-transformers on torch, and onnxruntime at fp32 and int8, on the same weights.

    .venv/bin/python -m bench.encoders --before /tmp/qa-before   # git archive main | tar -x -C DIR
    .venv/bin/python -m bench.encoders --passages 40 --rounds 1 --cold-runs 1   # a smoke run

- Question encode (the answer path's call, one question, one thread as the product runs it):
  every engine timed on the same question in turn, question after question, round after round,
  so all see the same machine load; medians. The numpy encoder is the `qa_bot/encoder.py` of
  the `--before` checkout (or, from git, of the last commit that had it), BLAS limited to one
  thread as its embedder did.
- Passage encode (ingest's call: batches of `[model] batch_size`, sorted by length, one thread
  per core): chunks/s of the bench's synthetic chunks, the engines in turn on each slice of 64
  chunks. Before this change ingest encoded on sentence-transformers.
- Ingest: the real `Ingestor.ingest()` of other synthetic issues into an empty index, with the
  embedder on torch (as before this change), at fp32 and at int8; A B C C B A.
- Cold start: `qa-bot ask` in a fresh process on that index at each precision, and (with
  --before) the old code on the fp32 one: wall time to the first answer line, CPU time.
- Vectors: cosine of each engine's vectors to sentence-transformers' (the reference).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    REPO_ROOT,
    bench_settings,
    log,
    print_machine,
    print_section,
    summarize_ms,
    table,
    write_json,
)
from bench.query_path import QUESTIONS, cold_start

NUMPY = "numpy encoder (before)"


def load_numpy_encoder(before: Path | None):
    """The numpy `BertEncoder` module as the project had it (it imports only numpy and
    `tokenizers`, so it loads beside today's code under another module name)."""
    if before is not None:
        source = (before / "qa_bot" / "encoder.py").read_text(encoding="utf-8")
    else:
        source = _git("show", f"{_last_numpy_revision()}:qa_bot/encoder.py")
    if "class BertEncoder" not in source:
        raise SystemExit("the --before checkout has no numpy BertEncoder in qa_bot/encoder.py")
    path = Path(tempfile.mkdtemp(prefix="bench-numpy-encoder-")) / "numpy_encoder.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("numpy_encoder_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout


def _last_numpy_revision() -> str:
    """The last commit whose qa_bot/encoder.py still has the numpy BertEncoder: HEAD until this
    change lands, then the parent of the commit that removed it."""
    if "class BertEncoder" in _git("show", "HEAD:qa_bot/encoder.py"):
        return "HEAD"
    changed = _git("log", "--format=%H", "-S", "class BertEncoder", "--", "qa_bot/encoder.py")
    if not changed.split():
        raise SystemExit("no numpy BertEncoder in this repository's history; pass --before DIR")
    return changed.split()[0] + "^"


def one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def make_engines(settings, folder: Path, before: Path | None):
    """name -> (encode one question, encode a batch of passages); all on the same weights."""
    import torch

    from qa_bot.embedding import SentenceTransformerEmbedder

    query, passage = settings.model.query_prompt, settings.model.passage_prompt
    batch = settings.model.batch_size
    cores = os.cpu_count() or 1
    engines: dict[str, tuple] = {}

    try:
        old = load_numpy_encoder(before).BertEncoder(folder)
    except (OSError, subprocess.CalledProcessError, SystemExit) as exc:
        log(f"no numpy encoder to compare with ({exc}); pass --before DIR")
    else:
        def numpy_question(text):
            with one_blas_thread():
                return old.encode([query + text], batch)

        engines[NUMPY] = (numpy_question, None)

    fp32 = SentenceTransformerEmbedder(settings.model, show_progress=False)
    fp32.warm_up()
    model = fp32.model  # sentence-transformers on torch, same folder

    def torch_question(text):
        torch.set_num_threads(1)
        return model.encode([text], prompt=query, normalize_embeddings=True,
                            show_progress_bar=False)

    def torch_passages(texts):
        torch.set_num_threads(cores)
        return model.encode(texts, prompt=passage, batch_size=batch, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    engines["sentence-transformers (torch)"] = (torch_question, torch_passages)
    for precision in ("fp32", "int8"):
        embedder = SentenceTransformerEmbedder(
            _with_precision(settings, precision).model, show_progress=False)
        embedder.warm_up()
        engines[f"onnxruntime {precision}"] = (
            lambda text, e=embedder: e.encode_queries([text]),
            lambda texts, e=embedder: e.encode_passages(texts),
        )
    return engines


def _with_precision(settings, precision: str):
    from dataclasses import replace

    return replace(settings, model=replace(settings.model, precision=precision))


def questions(engines: dict, rounds: int) -> list[dict]:
    for encode, _ in engines.values():  # first calls fill caches and thread pools
        for question in QUESTIONS[:2]:
            encode(question)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for question in QUESTIONS:
            for name, (encode, _) in engines.items():
                started = time.perf_counter()
                encode(question)
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times.get(NUMPY) or times["onnxruntime fp32"])
    return [{"engine": name, **summarize_ms(values),
             "speed-up vs numpy": base / statistics.median(values)}
            for name, values in times.items()]


def passages(engines: dict, texts: list[str], slice_size: int = 64) -> list[dict]:
    """Each engine encodes the same slices of `slice_size` chunks in turn (the order rotating
    slice by slice), so that all see the same machine load however it drifts."""
    batched = {name: fns[1] for name, fns in engines.items() if fns[1] is not None}
    names = list(batched)
    seconds = dict.fromkeys(names, 0.0)
    for number, start in enumerate(range(0, len(texts), slice_size)):
        part = texts[start : start + slice_size]
        log(f"passages {start}–{start + len(part)} of {len(texts)}")
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            batched[name](part)
            seconds[name] += time.perf_counter() - started
    base = len(texts) / seconds["sentence-transformers (torch)"]
    return [{"engine": name, "chunks": len(texts), "seconds": value,
             "chunks_per_s": len(texts) / value,
             "speed-up vs torch": len(texts) / value / base}
            for name, value in seconds.items()]


def agreement(engines: dict, texts: list[str]) -> list[dict]:
    reference = np.vstack([engines["sentence-transformers (torch)"][0](t) for t in texts])
    rows = []
    for name, (encode, _) in engines.items():
        ours = np.vstack([encode(t) for t in texts])
        cosines = np.einsum("ij,ij->i", ours, reference)
        rows.append({"engine": name, "min_cosine": float(cosines.min()),
                     "mean_cosine": float(cosines.mean())})
    return rows


TORCH_INGEST = "torch (before)"


def ingests(settings, files: list[Path], scratch: Path) -> tuple[list[dict], dict]:
    """`Ingestor.ingest()` of the same issues into empty indexes: with the embedder on torch
    (how ingest encoded before this change), at fp32 and at int8; twice each, in the order
    A B C C B A, mean of the two."""
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.ingest import Ingestor

    embedders = {}
    for kind in (TORCH_INGEST, "fp32", "int8"):
        precision = "fp32" if kind == TORCH_INGEST else kind
        embedder = SentenceTransformerEmbedder(_with_precision(settings, precision).model,
                                               show_progress=False)
        if kind == TORCH_INGEST:
            embedder._load_model()  # sentence-transformers, as warm_up did for batches before
        else:
            embedder.warm_up()
        embedders[kind] = embedder
    seconds: dict[str, list[float]] = {kind: [] for kind in embedders}
    chunks, indexes = {}, {}
    for run, kind in enumerate(list(embedders) + list(reversed(embedders))):
        index_dir = scratch / f"index-{kind.split()[0]}-{run}"
        these = bench_settings(index_dir)
        these = _with_precision(these, "fp32" if kind == TORCH_INGEST else kind)
        log(f"Ingestor.ingest(), {kind}")
        started = time.perf_counter()
        report = Ingestor(these, embedders[kind], show_progress=False).ingest(files)
        seconds[kind].append(time.perf_counter() - started)
        chunks[kind] = report.chunks_total
        if kind != TORCH_INGEST:
            indexes[kind] = index_dir
    base = chunks[TORCH_INGEST] / statistics.fmean(seconds[TORCH_INGEST])
    rows = []
    for kind, values in seconds.items():
        rate = chunks[kind] / statistics.fmean(values)
        rows.append({"ingest": f"Ingestor.ingest(), {kind}", "chunks": chunks[kind],
                     "passes_s": " / ".join(f"{v:.1f}" for v in values), "chunks_per_s": rate,
                     "speed-up vs before": rate / base})
    return rows, indexes


def cold_starts(indexes: dict, runs: int, before: Path | None) -> list[dict]:
    rows = []
    saved = os.environ.get("QA_BOT_MODEL_PRECISION")
    try:
        for precision, index_dir in indexes.items():
            os.environ["QA_BOT_MODEL_PRECISION"] = precision
            log(f"cold start at {precision}")
            rows.append({"code": f"this checkout, {precision}", **cold_start(index_dir, runs)})
        if before is not None:
            os.environ.pop("QA_BOT_MODEL_PRECISION", None)
            log("cold start of the --before code")
            rows.append({"code": f"before ({before}), numpy encoder",
                         **cold_start(indexes["fp32"], runs, code_dir=before)})
    finally:
        if saved is None:
            os.environ.pop("QA_BOT_MODEL_PRECISION", None)
        else:
            os.environ["QA_BOT_MODEL_PRECISION"] = saved
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=320, help="about this many chunks")
    parser.add_argument("--ingest-chunks", type=int, default=120,
                        help="about this many chunks for the ingest runs (6 of them)")
    parser.add_argument("--rounds", type=int, default=4,
                        help=f"passes over the {len(QUESTIONS)} questions (default 4)")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--before", type=Path,
                        help="a checkout of the code before onnxruntime (`git archive main | "
                             "tar -x -C DIR`): its numpy encoder and its cold start")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from bench.ingest_path import chunk_texts
    from bench.synth import articles_for_chunks, write_issues
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.model_convert import ensure_bundled_model

    print_machine("model runtimes: numpy encoder vs torch vs onnxruntime fp32 / int8")
    scratch = Path(tempfile.mkdtemp(prefix="bench-encoders-"))
    try:
        settings = bench_settings(scratch / "unused")
        folder = ensure_bundled_model(settings.model_cache_path, show_progress=False)
        engines = make_engines(settings, folder, args.before)
        counter = SentenceTransformerEmbedder(settings.model, show_progress=False)
        tokens = counter.count_tokens
        rows = articles_for_chunks(args.passages, tokens, seed=7, with_seed=False)
        files = write_issues(scratch / "issues", rows, fmt="bulletin", include_seed=False)
        _, chunks = chunk_texts(settings, counter, files)
        rows = articles_for_chunks(args.ingest_chunks, tokens, seed=11, with_seed=False)
        ingest_files = write_issues(scratch / "ingest", rows, fmt="bulletin", include_seed=False)
        texts = [c.embed_text for c in chunks]

        log("questions")
        question_rows = questions(engines, args.rounds)
        print_section(f"Question encode, one thread ({len(QUESTIONS)} questions × {args.rounds} "
                      "rounds, engines interleaved; target ≥ 1.5× numpy at fp32, ≥ 3× at int8):",
                      table(question_rows, ["engine", "n", "p50_ms", "p95_ms", "mean_ms",
                                            "speed-up vs numpy"]))
        passage_rows = passages(engines, texts)
        print_section(f"Passage encode, {os.cpu_count()} threads, batches of "
                      f"{settings.model.batch_size} ({len(texts)} chunks, "
                      f"{sum(map(tokens, texts)) / len(texts):.0f} tokens on average; engines "
                      "in turn on each slice of 64):",
                      table(passage_rows, ["engine", "chunks", "seconds", "chunks_per_s",
                                           "speed-up vs torch"]))
        agreement_rows = agreement(engines, QUESTIONS + texts[:20])
        print_section("Vectors against sentence-transformers' (cosine, 12 questions + 20 "
                      "chunks):", table(agreement_rows, ["engine", "min_cosine", "mean_cosine"]))
        ingest_rows, indexes = ingests(settings, ingest_files, scratch)
        print_section("Ingest (parse … write) into an empty index; before this change it "
                      "encoded on torch (target: int8 ≥ 1.6× before, fp32 no slower):",
                      table(ingest_rows, ["ingest", "chunks", "passes_s", "chunks_per_s",
                                          "speed-up vs before"]))
        cold_rows = cold_starts(indexes, args.cold_runs, args.before)
        print_section(f"Cold start: `qa-bot ask \"{QUESTIONS[0]}\"` on that index "
                      f"({args.cold_runs} runs; target ≤ 1.5 s to the first answer line):",
                      table(cold_rows, ["code", "runs", "first_answer_s_p50",
                                        "first_answer_s_min", "exit_s_p50", "cpu_s_p50"]))
        write_json(args.json, {"questions": question_rows, "passages": passage_rows,
                               "agreement": agreement_rows, "ingest": ingest_rows,
                               "cold": cold_rows})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
