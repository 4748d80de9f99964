"""Concurrent readers: questions keep being answered, correctly, while `qa-bot ingest` and
`qa-bot remove` run in other processes and swap (and prune) the snapshots under them.

The readers are what the Telegram bot runs: two answer threads sharing one QAService and a
watcher thread calling reload_if_changed(). Zero errors, zero empty answers; the number of
questions answered while the index was being written is printed (and must be well above zero).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from qa_bot.service import QAService
from tests.conftest import REPO_ROOT, make_settings
from tests.fault_support import (
    QA_BOT,
    SEED_QUESTIONS,
    index_state,
    seed_articles,
    subprocess_env,
    write_issue,
)

pytestmark = pytest.mark.slow


class Readers:
    def __init__(self, service: QAService, threads: int = 2) -> None:
        self.service = service
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.empty: list[str] = []
        self.answered: list[float] = []  # when each answer was complete
        self.swaps: list[str] = []
        self._threads = [threading.Thread(target=self._answer, args=(n,), daemon=True)
                         for n in range(threads)]
        self._threads.append(threading.Thread(target=self._watch, daemon=True))

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _answer(self, offset: int) -> None:
        turn = offset
        while not self.stop.is_set():
            question, expected = SEED_QUESTIONS[turn % len(SEED_QUESTIONS)]
            turn += 1
            try:
                answer = self.service.answer(question)
            except Exception as exc:  # the test reports every one
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if not answer.passages or answer.sentence is None:
                self.empty.append(question)
            elif expected not in answer.sentence.text:
                self.errors.append(f"wrong answer to {question}: {answer.sentence.text}")
            self.answered.append(time.perf_counter())

    def _watch(self) -> None:
        while not self.stop.is_set():
            try:
                if self.service.reload_if_changed():
                    self.swaps.append(self.service.snapshot.name)
            except Exception as exc:
                self.errors.append(f"reload: {type(exc).__name__}: {exc}")
            time.sleep(0.05)


def _run(argv: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    result = subprocess.run([str(QA_BOT), *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    return started, time.perf_counter()


def test_readers_answer_while_the_index_is_swapped(seed_index_dir, embedder, tmp_path):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(seed_index_dir, index)
    seed = seed_articles()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    july = write_issue(inputs / "bulletin-2023-07.jsonl", seed[0:3], 7)
    august = write_issue(inputs / "bulletin-2023-08.jsonl", seed[3:5], 8)
    service = QAService(make_settings(index), embedder=embedder)
    service.warm_up()
    first = service.snapshot.name

    windows: list[tuple[float, float]] = []
    with Readers(service) as readers:
        time.sleep(1.0)
        base = ["--index-dir", str(index)]
        windows.append(_run([*base, "ingest", "-q", str(july), str(august)]))
        windows.append(_run([*base, "remove", "bulletin-2023-07"]))
        windows.append(_run([*base, "ingest", "-q", str(july)]))  # the 4th snapshot: one pruned
        deadline = time.perf_counter() + 30
        final = index_state(index)
        while service.snapshot.name == first or len(readers.swaps) < 1:
            assert time.perf_counter() < deadline, "the new index was never picked up"
            time.sleep(0.1)
        time.sleep(1.0)

    during = sum(1 for t in readers.answered if any(a <= t <= b for a, b in windows))
    seconds = sum(b - a for a, b in windows)
    print(f"{len(readers.answered)} questions answered, {during} of them during the "
          f"{seconds:.0f} s of ingest/remove; {len(readers.swaps)} snapshot swaps seen; "
          f"{len(readers.errors)} errors, {len(readers.empty)} empty answers")
    assert readers.errors == []
    assert readers.empty == []
    assert during >= 10
    assert readers.swaps  # at least one swap seen while answering
    assert len(list((index / "snapshots").iterdir())) == 3  # pruned under the readers
    assert set(final.issues) == {"bulletin-2023-06", "bulletin-2023-07", "bulletin-2023-08"}
    # The readers serve what the last ingest wrote, the new issues included.
    service.reload_if_changed()
    assert service.snapshot.name == Path(index / "CURRENT").read_text().strip()
    hits = service.answer("上党经开区党工委委员、管委会副主任陈华一行赴沁源经开区考察学习", k=10)
    assert "bulletin-2023-08" in {hit.chunk.issue for hit in hits.passages}
