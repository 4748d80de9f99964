"""How fast one `qa-bot bot` process answers through the local Telegram Bot API emulator.

Starts the emulator (tests/telegram_emulator, `npm ci --prefix tests/telegram_emulator` first)
and `python -m qa_bot bot` as a subprocess polling it, then plays users with the e2e harness:

1. latency: one user asks `--latency-questions` questions one after another; each round trip
   is user message → bot (getUpdates, answer, sendChatAction, sendMessage) → reply visible to
   the user. Reported: median and p90.
2. throughput: `--users` users ask at the same time, each asking again as soon as its reply
   arrives, for `--duration` seconds. Reported: replies per second over the whole run (until
   the last in-flight reply), and the latency each user saw under that load.

The per-user rate limit is switched off for the run (the simulated users ask far faster than
staff would); Telegram flood control stays as configured (`--no-flood-control` to measure
the bot alone: Telegram itself allows about 30 messages per second per bot).

    .venv/bin/python bench/bot_throughput.py --index-dir embeddings        # an existing index
    .venv/bin/python bench/bot_throughput.py --users 20 --duration 30 --json

Without --index-dir the seed issue (corpus/) is ingested into a temporary index first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the e2e harness lives there
sys.path.insert(0, str(REPO_ROOT))

from telegram_harness import Emulator, EmulatorClient, private_chat, stop_process  # noqa: E402

log = logging.getLogger("bench.bot_throughput")

QUESTIONS = [
    "广灵经开区有多少家再生金属企业？",
    "侯马开发区召开了什么会？",
    "运城市委书记丁小强调研了什么？",
    "广灵经开区规模以上企业有多少家？",
    "左云开发区清退了几家企业？",
    "再生铝预计2023年产能是多少？",
    "长治经开区企业管理讲座讲了什么？",
    "祁县经济开发区开展了什么警示教育？",
    "文水经济开发区如何抓安全生产？",
    "沁源经开区党工委委员是谁？",
]
FIRST_USER = 700_000


def build_seed_index(directory: Path) -> None:
    from qa_bot.config import Settings
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.ingest import Ingestor

    settings = Settings(index_dir=str(directory),
                        zone_aliases=str(REPO_ROOT / "config" / "zones.toml"))
    embedder = SentenceTransformerEmbedder(settings.model, show_progress=False)
    report = Ingestor(settings, embedder, show_progress=False).ingest([REPO_ROOT / "corpus"])
    log.info("%s", report.summary())


def start_bot(emulator: Emulator, token: str, index_dir: Path, users: int, work_dir: Path,
              flood_control: bool, answer_workers: int | None) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "QA_BOT_CONFIG": str(REPO_ROOT / "config" / "qa-bot.toml"),
        "QA_BOT_INDEX_DIR": str(Path(index_dir).resolve()),
        "QA_BOT_ZONE_ALIASES": str(REPO_ROOT / "config" / "zones.toml"),
        "QA_BOT_TELEGRAM_TOKEN": token,
        "QA_BOT_TELEGRAM_BASE_URL": emulator.base_url,
        "QA_BOT_TELEGRAM_ALLOWED_USERS": ",".join(
            str(FIRST_USER + i) for i in range(users + 1)),
        "QA_BOT_TELEGRAM_RATE_LIMIT_PER_MINUTE": "0",
        "QA_BOT_TELEGRAM_FLOOD_CONTROL": "true" if flood_control else "false",
        "QA_BOT_TELEGRAM_FEEDBACK_PATH": str(work_dir / "feedback.jsonl"),
    }
    if "QA_BOT_MODEL_CACHE" in os.environ:
        env["QA_BOT_MODEL_CACHE_DIR"] = os.environ["QA_BOT_MODEL_CACHE"]
    if answer_workers:
        env["QA_BOT_TELEGRAM_ANSWER_WORKERS"] = str(answer_workers)
    return subprocess.Popen([sys.executable, "-m", "qa_bot", "bot"], cwd=work_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _ms(values: list[float]) -> dict:
    if not values:
        return {}
    return {"median_ms": round(statistics.median(values) * 1000, 1),
            "p90_ms": round(_percentile(values, 90) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1), "n": len(values)}


def measure(emulator: Emulator, token: str, users: int, duration: float,
            latency_questions: int, timeout: float = 120.0) -> dict:
    answered = 0
    lock = threading.Lock()

    def ask(client: EmulatorClient, user_id: int, question: str) -> float:
        nonlocal answered
        started = time.perf_counter()
        reply = client.ask(private_chat(user_id), user_id, question, timeout=timeout)
        elapsed = time.perf_counter() - started
        if reply.entities or "相关段落" in reply.text:
            with lock:
                answered += 1
        return elapsed

    with emulator.client(token) as client:  # one user, one question at a time
        ask(client, FIRST_USER, QUESTIONS[0])  # warm-up, not counted
        latencies = [ask(client, FIRST_USER, QUESTIONS[i % len(QUESTIONS)])
                     for i in range(latency_questions)]

    deadline = time.monotonic() + duration
    barrier = threading.Barrier(users)

    def user_loop(number: int) -> list[float]:
        user_id = FIRST_USER + 1 + number
        seen = []
        with emulator.client(token) as own:
            barrier.wait()
            index = number
            while time.monotonic() < deadline:
                seen.append(ask(own, user_id, QUESTIONS[index % len(QUESTIONS)]))
                index += 1
        return seen

    started = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        per_user = list(pool.map(user_loop, range(users)))
    elapsed = time.perf_counter() - started
    loaded = [t for seen in per_user for t in seen]
    return {
        "latency_one_user": _ms(latencies),
        "users": users,
        "duration_s": round(elapsed, 2),
        "replies": len(loaded),
        "replies_per_s": round(len(loaded) / elapsed, 2),
        "latency_under_load": _ms(loaded),
        "answers_with_content": answered,
    }


def run(index_dir: Path | None, users: int = 20, duration: float = 30.0,
        latency_questions: int = 20, flood_control: bool = True,
        answer_workers: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="qa-bot-bench-") as tmp:
        work_dir = Path(tmp)
        if index_dir is None:
            index_dir = work_dir / "index"
            build_seed_index(index_dir)
        with Emulator() as emulator:
            token = emulator.new_token()
            bot = start_bot(emulator, token, index_dir, users, work_dir, flood_control,
                            answer_workers)
            try:
                with emulator.client(token) as client:
                    client.wait_call("setMyCommands", timeout=300)  # model and index loaded
                result = measure(emulator, token, users, duration, latency_questions)
            finally:
                code, stderr = stop_process(bot)
            if code != 0:
                log.warning("bot exited with %s:\n%s", code, stderr[-2000:])
    result.update({
        "flood_control": flood_control,
        "answer_workers": answer_workers or "default",
        "cpus": os.cpu_count(),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    })
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index-dir", type=Path, help="existing index (default: build one)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--latency-questions", type=int, default=20)
    parser.add_argument("--no-flood-control", action="store_true",
                        help="switch off PTB's AIORateLimiter (Telegram flood limits)")
    parser.add_argument("--answer-workers", type=int, help="[telegram] answer_workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per emulator request
    result = run(args.index_dir, args.users, args.duration, args.latency_questions,
                 not args.no_flood_control, args.answer_workers)
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        one, load = result["latency_one_user"], result["latency_under_load"]
        sys.stdout.write(
            f"round trip, one user:   median {one['median_ms']} ms, p90 {one['p90_ms']} ms "
            f"({one['n']} questions)\n"
            f"{result['users']} users at once: {result['replies_per_s']} replies/s "
            f"({result['replies']} in {result['duration_s']} s); latency median "
            f"{load['median_ms']} ms, p90 {load['p90_ms']} ms\n"
            f"flood control {'on' if result['flood_control'] else 'off'}, answer workers "
            f"{result['answer_workers']}, {result['cpus']} CPUs, load average "
            f"{result['load_average_1m_after']}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
