"""Span reader latency: warm ``SpanReader.read()`` for 4 candidate sentences, fp32 vs int8.

    .venv/bin/python -m bench.reader [--rounds 50] [--path DIR] [--threads N] [--json FILE]

Both precisions are measured in one run, interleaved round by round so that load from other
work on the machine hits both alike. The sentences are ~60 characters of bulletin-style text
(written for this benchmark); the reader is the committed one unless --path names another.
Also prints the one-time costs: exporting the graph (first use only) and warm-up.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import log, print_machine, print_section, summarize_ms, table, write_json

QUESTION = "广灵经开区今年签约了多少个项目？"
CONTEXTS = [
    "广灵经济技术开发区今年以来共签约项目12个，总投资额达到46.8亿元，其中工业项目9个。",
    "签约仪式由县委副书记、县长王建峰主持，县直有关部门和各乡镇负责人参加了仪式。",
    "开发区管委会表示，下一步将围绕再生金属和新能源两条产业链，持续开展精准招商工作。",
    "截至6月底，园区已有规模以上工业企业28家，上半年实现工业总产值31.5亿元，同比增长12%。",
]


def main(argv: list[str] | None = None) -> int:
    from qa_bot.config import ModelSettings, ReaderSettings
    from qa_bot.reader import SpanReader

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--path", default="", help="trained reader folder (default: committed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=os.environ.get(
        "QA_BOT_MODEL_CACHE", ModelSettings().cache_dir))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    print_machine("Span reader: read() of 4 sentences (~60 characters each)")
    readers, rows = {}, []
    for precision in ("fp32", "int8"):
        reader = SpanReader(
            ReaderSettings(path=args.path, precision=precision, threads=args.threads),
            cache_dir=Path(args.cache_dir).expanduser(),
        )
        log(f"warming up the {precision} reader (exports the graph on first use)")
        started = time.perf_counter()
        reader.warm_up()
        warm_up = time.perf_counter() - started
        reader.read(QUESTION, CONTEXTS)  # first run: onnxruntime allocates its buffers
        readers[precision] = reader
        rows.append({"precision": precision, "warm_up_s": warm_up})
    times: dict[str, list[float]] = {precision: [] for precision in readers}
    for _ in range(args.rounds):
        for precision, reader in readers.items():
            started = time.perf_counter()
            reader.read(QUESTION, CONTEXTS)
            times[precision].append(time.perf_counter() - started)
    for row in rows:
        span = readers[row["precision"]].read(QUESTION, CONTEXTS)[0]
        row.update(summarize_ms(times[row["precision"]]))
        row["best span"] = CONTEXTS[span.context][span.start : span.end]
    print_section(f"threads {args.threads}, {args.rounds} rounds", table(
        rows, ["precision", "n", "p50_ms", "p95_ms", "mean_ms", "warm_up_s", "best span"]))
    write_json(args.json, {"rows": rows, "threads": args.threads})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
