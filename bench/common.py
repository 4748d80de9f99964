"""Shared by the benchmarks: the machine header, percentiles, tables, memory, cache paths.

Benchmarks are plain scripts (`python -m bench.NAME`); none of this is imported by qa_bot.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Built indexes worth keeping between runs (the 10k-chunk query index, the news index).
CACHE_DIR = Path(os.environ.get("QA_BOT_BENCH_CACHE", "~/.cache/qa-bot/bench")).expanduser()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine() -> dict:
    """Cores, CPU model, versions: every table starts with these."""
    info = {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory": _memory_total(),
        "python": platform.python_version(),
    }
    for name in ("numpy", "torch", "onnxruntime", "faiss", "bm25s", "sentence_transformers",
                 "tokenizers"):
        info[name] = _version_of(name)
    info["load average (1/5/15 min)"] = load_average()
    return info


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "?"


def _version_of(name: str) -> str:
    # Read from the installed metadata: importing torch just to print its version costs seconds.
    from importlib import metadata

    distribution = {"faiss": "faiss-cpu", "sentence_transformers": "sentence-transformers"}
    try:
        return metadata.version(distribution.get(name, name))
    except metadata.PackageNotFoundError:
        return "-"


def print_machine(title: str) -> None:
    info = machine()
    print(f"## {title}")
    print()
    print(f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']} RAM; "
          f"load average {info['load average (1/5/15 min)']} at start")
    print("versions: " + ", ".join(
        f"{k} {v}" for k, v in info.items()
        if k not in ("cores", "cpu", "memory", "load average (1/5/15 min)")
    ))
    print(time.strftime("date: %Y-%m-%d %H:%M:%S %Z"))
    print()


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join(
        [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(r) for r in cells]
    )


def print_section(title: str, body: str) -> None:
    """A titled block of a benchmark's report (a table, a fenced profile), blank line after."""
    print(title)
    print()
    print(body)
    print()


def fenced(text: str) -> str:
    return f"```\n{text}\n```"


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def write_json(path: Path | None, payload: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")


def bench_settings(index_dir: Path, **retrieval):
    """Product settings as the CLI would load them, pointed at a bench index."""
    from dataclasses import replace

    from qa_bot.config import load_settings

    settings = load_settings(REPO_ROOT / "config" / "qa-bot.toml", index_dir=str(index_dir))
    settings = replace(settings, zone_aliases=str(REPO_ROOT / "config" / "zones.toml"))
    if retrieval:
        settings = replace(settings, retrieval=replace(settings.retrieval, **retrieval))
    return settings


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
