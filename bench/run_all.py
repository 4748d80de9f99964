"""Every benchmark of docs/performance.md, one after the other, at full size (`make bench`).

    .venv/bin/python -m bench.run_all            # ~40 min on 2 cores once the indexes are cached
    .venv/bin/python -m bench.run_all --quick    # small sizes: a few minutes

The 10k-chunk query index and the news index are built on first use and cached under
~/.cache/qa-bot/bench/ (the news build takes tens of minutes; see bench/news_corpus.py).
"""

from __future__ import annotations

import argparse
import sys

from bench import encoders, ingest_path, news_corpus, query_path, scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere")
    parser.add_argument("--skip-news", action="store_true", help="no news corpus benchmark")
    args = parser.parse_args(argv)
    quick = args.quick
    runs = [
        (query_path.main, ["--chunks", "1000", "--rounds", "3", "--cold-runs", "2"]
         if quick else ["--profile"]),
        (ingest_path.main, ["--chunks", "200"] if quick else []),
        (encoders.main, ["--passages", "60", "--rounds", "1", "--cold-runs", "1"] if quick
         else []),
        (scale.main, ["--sizes", "10000,100000"] if quick else []),
    ]
    if not args.skip_news:
        runs.append((news_corpus.main, ["--limit", "300"] if quick else []))
    status = 0
    for run, arguments in runs:
        status = max(status, run(arguments))
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
