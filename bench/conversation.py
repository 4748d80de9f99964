"""What conversations cost: `answer()` with a conversation vs the same message alone, and the
memory a conversation holds.

Latency: for every turn of a few seed-issue conversations, `QAService.answer(message,
conversation=...)` and `QAService.answer(message)` alternate call by call, so load stretches
both alike; the table gives p50/p95 of each and of the per-call difference, first turns and
follow-ups apart. Memory: `Conversation.footprint_bytes()` of full conversations, and the heap
growth (tracemalloc) of a ConversationStore filled with `--conversations` full ones.

    .venv/bin/python -m bench.conversation [--rounds 5] [--index-dir DIR]
        [--carry-over CONVERSATIONS.jsonl QUESTIONS.jsonl]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.common import print_machine, print_section, summarize_ms, table
from qa_bot.config import load_settings
from qa_bot.conversation import Conversation, ConversationStore, Turn

CONVERSATIONS = [
    ["侯马经济开发区的调度会是谁主持的？", "他要求全区上下做什么？", "那临汾开发区呢？"],
    ["广灵经开区有多少家再生金属企业？", "规模以上企业有多少家？", "还有别的开发区吗？"],
    ["长治经开区举办了什么讲座？", "那临汾开发区呢？", "谁主讲的？"],
    ["丁小强要求用好多少种招商模式？", "他去了哪些企业？", "祁县经济开发区签订了多少份承诺书？"],
]
REPO_ROOT = Path(__file__).resolve().parent.parent


def latency(service, rounds: int) -> list[dict]:
    with_conversation: dict[str, list[float]] = {"first turn": [], "follow-up": []}
    alone: dict[str, list[float]] = {"first turn": [], "follow-up": []}
    difference: dict[str, list[float]] = {"first turn": [], "follow-up": []}
    for question in (c[0] for c in CONVERSATIONS):  # warm caches
        service.answer(question, conversation=Conversation(0))
    for _ in range(rounds):
        for messages in CONVERSATIONS:
            conversation = Conversation(0)
            for number, message in enumerate(messages):
                part = "follow-up" if number else "first turn"
                started = time.perf_counter()
                service.answer(message, conversation=conversation)
                middle = time.perf_counter()
                service.answer(message)
                ended = time.perf_counter()
                with_conversation[part].append(middle - started)
                alone[part].append(ended - middle)
                difference[part].append((middle - started) - (ended - middle))
    rows = []
    for part in ("first turn", "follow-up"):
        rows.append({
            "turns": part,
            "n": len(alone[part]),
            "alone p50 ms": summarize_ms(alone[part])["p50_ms"],
            "with conversation p50 ms": summarize_ms(with_conversation[part])["p50_ms"],
            "difference p50 ms": summarize_ms(difference[part])["p50_ms"],
            "difference p95 ms": summarize_ms(difference[part])["p95_ms"],
        })
    return rows


def resolution_cpu(service, repeats: int = 100) -> list[dict]:
    """CPU time (process time, which other processes' load does not inflate) of each step a
    conversation adds, per follow-up: reading it, the coverage checks, the turn remembered,
    and the extra chunks retrieval looks at for the article under discussion."""
    rows = []
    for messages in CONVERSATIONS:
        conversation = Conversation(0)
        service.answer(messages[0], conversation=conversation)
        last = conversation.last()
        message = messages[1]
        steps = _steps(service, message, last, service.answer(message))
        cost = {name: _cpu_median_ms(step, repeats) for name, step in steps.items()}
        extra_search = max(cost.pop("search + article") - cost.pop("search"), 0.0)
        rows.append({"follow-up": message, **cost, "extra search": extra_search,
                     "total added (CPU ms)": sum(cost.values()) + extra_search})
    return rows


def _steps(service, message: str, last: Turn, answer) -> dict:
    from qa_bot.conversation import read_message

    loaded = service.loaded
    return {
        "read": lambda: read_message(message, last, loaded.zones),
        "coverage ×2": lambda: (service._coverage(message, last.article_id),
                                service._coverage(message, last.article_id)),
        "turn": lambda: service._turn(message, answer, last),
        "search": lambda: loaded.retriever.search(message),
        "search + article": lambda: loaded.retriever.search(
            message, include_article=last.article_id),
    }


def _cpu_median_ms(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time_ns()
        step()
        times.append(time.process_time_ns() - started)
    return sorted(times)[len(times) // 2] / 1e6


def memory(service, conversations: int) -> dict:
    full = Conversation(0)
    for message in CONVERSATIONS[0]:
        service.answer(message, conversation=full)
    turns = full.turns
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = ConversationStore(idle_seconds=1800, max_conversations=conversations)
    for key in range(conversations):
        conversation = store.get(key)
        for turn in turns:  # new strings per conversation, as real chats have
            conversation.remember(Turn(**{
                name: (value + " ")[:-1] if isinstance(value, str) else value
                for name, value in vars(turn).items()}))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {
        "footprint of a full conversation (B)": full.footprint_bytes(),
        "conversations in the store": len(store),
        "heap per conversation (B)": round(grown / conversations),
        "store total (MB)": round(grown / 1e6, 2),
    }


def carry_over(service, conversations_file: Path, questions_file: Path) -> dict:
    """Each question of a question set asked right after an unrelated first turn (one of the
    conversation file's, drawn with a fixed seed): how many get another answer than alone."""
    import random

    from qa_bot.evaluate import load_conversations, load_questions

    first_turns = [turns[0] for turns in load_conversations(conversations_file)]
    draw = random.Random(0)
    changed = []
    questions = load_questions(questions_file)
    for question in questions:
        unrelated = [t for t in first_turns if t.gold_title != question.gold_title]
        conversation = Conversation(0)
        service.answer(draw.choice(unrelated).text, conversation=conversation)
        asked_after = service.answer(question.text, conversation=conversation).to_dict()
        alone = service.answer(question.text).to_dict()
        asked_after.pop("understood_as"), alone.pop("understood_as")
        if asked_after != alone:
            changed.append(question.text)
    return {"questions": len(questions), "answered differently": len(changed),
            "which": "；".join(changed) or "–"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-dir", type=Path, help="an index of corpus/ (built if absent)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--carry-over", nargs=2, type=Path,
                        metavar=("CONVERSATIONS.jsonl", "QUESTIONS.jsonl"),
                        help="also: are new questions bent by an unrelated first turn?")
    args = parser.parse_args(argv)

    from qa_bot.ingest import Ingestor
    from qa_bot.service import QAService

    print_machine("conversations: answer() with and without a conversation, and memory")
    with tempfile.TemporaryDirectory(prefix="qa-bot-bench-") as scratch:
        index_dir = args.index_dir or Path(scratch)
        settings = load_settings(REPO_ROOT / "config" / "qa-bot.toml", index_dir=str(index_dir))
        service = QAService(settings, show_progress=False)
        if not service.store.exists():
            Ingestor(settings, service.embedder, show_progress=False).ingest(
                [REPO_ROOT / "corpus"])
        service.warm_up()
        rows = latency(service, args.rounds)
        steps = resolution_cpu(service)
        footprint = memory(service, args.conversations)
        bent = carry_over(service, *args.carry_over) if args.carry_over else None
    print_section("latency (seed issue; the two calls alternate)", table(rows))
    print_section("what resolving a follow-up adds, step by step (CPU ms, median)",
                  table(steps))
    print_section("memory", table([footprint]))
    if bent is not None:
        print_section("new questions after an unrelated first turn", table([bent]))
    if args.json:
        args.json.write_text(json.dumps({"latency": rows, "resolution": steps,
                                         "memory": footprint, "carry_over": bent},
                                        ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
