"""Crash during ingest: `qa-bot ingest` of a multi-issue set is killed with SIGKILL at many
moments, and every time the index loads, answers, and holds exactly the state before the ingest
or exactly the state after it — never a mix, never a stale chunk. Re-running the ingest then
completes it, whatever the killed run left behind (temporary directories, orphan snapshots).

Kill points: every step the index writer takes on disk (each fsync, the rename of the finished
snapshot, the write and the replacement of CURRENT, the pruning of old snapshots), reached
through tests/crash_runner.py, plus moments drawn at random (seeded) over the whole run of the
plain `qa-bot` command: imports, model load, parsing, embedding, writing.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa_bot.ingest import Ingestor
from qa_bot.service import QAService
from tests.conftest import REPO_ROOT, SEED_ISSUE, make_settings
from tests.fault_support import (
    QA_BOT,
    SEED_QUESTIONS,
    index_state,
    run_qa_bot,
    seed_articles,
    subprocess_env,
    write_issue,
)

pytestmark = pytest.mark.slow

# CRASH_RANDOM_KILLS=100 for a longer soak.
RANDOM_KILLS = int(os.environ.get("CRASH_RANDOM_KILLS", "12"))
MIN_KILL_POINTS = 20
RUNNER = Path(__file__).resolve().parent / "crash_runner.py"


@dataclass
class World:
    before: Path  # the index before the ingest (three snapshots, so the ingest prunes one)
    after_state: object
    before_state: object
    inputs: Path  # the multi-issue set the ingest under test adds
    events: list[str]  # the writer's steps, as crash_runner announced them
    seconds: float  # one uninterrupted run of the command


def _ingest(index_dir: Path, embedder, *paths: Path):
    report = Ingestor(make_settings(index_dir), embedder, show_progress=False).ingest(paths)
    assert not report.errors, report.errors
    return report


def _command(index_dir: Path, inputs: Path) -> list[str]:
    return ["--index-dir", str(index_dir), "ingest", "-q", str(inputs)]


def _run_traced(index_dir: Path, inputs: Path, pause_at: int | None = None,
                timeout: float = 600) -> tuple[int, list[str]]:
    """crash_runner over `qa-bot ingest`; with pause_at, SIGKILL it when it stops there."""
    read_fd, write_fd = os.pipe()
    env = subprocess_env(CRASH_EVENTS_FD=str(write_fd))
    if pause_at is not None:
        env["CRASH_PAUSE_AT"] = str(pause_at)
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), *_command(index_dir, inputs)], env=env, cwd=REPO_ROOT,
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    events: list[str] = []
    try:
        with os.fdopen(read_fd, encoding="utf-8") as pipe:
            for line in pipe:
                events.append(line.rstrip("\n"))
                if pause_at is not None and line.startswith(f"{pause_at} pause "):
                    proc.send_signal(signal.SIGKILL)
                    break
        stderr = proc.communicate()[1].decode(errors="replace")
    finally:
        timer.cancel()
    if pause_at is None:
        assert proc.returncode == 0, stderr
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, events[-3:], stderr)
    return proc.returncode, events


def _run_killed_after(index_dir: Path, inputs: Path, delay: float) -> int:
    """The plain `qa-bot ingest`, SIGKILLed `delay` seconds after it started."""
    proc = subprocess.Popen(
        [str(QA_BOT), *_command(index_dir, inputs)], cwd=REPO_ROOT, env=subprocess_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    stderr = proc.communicate()[1]
    # Killed, or finished its work: anything else is a failure of its own, not a crash test.
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return proc.returncode


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder) -> World:
    root = tmp_path_factory.mktemp("crash")
    seed = seed_articles()
    early, inputs = root / "early", root / "inputs"
    early.mkdir()
    inputs.mkdir()
    before = root / "before"
    # Three snapshots before: the seed, issue 07 as first printed, issue 07 corrected.
    _ingest(before, embedder, SEED_ISSUE)
    _ingest(before, embedder, write_issue(early / "bulletin-2023-07.jsonl", seed[0:3], 7))
    _ingest(before, embedder, write_issue(early / "bulletin-2023-07.jsonl", seed[0:4], 7))
    # The ingest under test: issue 07 again with one article edited, one dropped and one added,
    # and a new issue 08.
    write_issue(inputs / "bulletin-2023-07.jsonl", [seed[0], seed[1], seed[2], seed[8]], 7,
                edit={0: "会后，调研组还察看了新建的标准化厂房。"})
    write_issue(inputs / "bulletin-2023-08.jsonl", seed[3:5], 8)

    calibration = root / "calibration"
    shutil.copytree(before, calibration)
    started = time.perf_counter()
    _, events = _run_traced(calibration, inputs)
    seconds = time.perf_counter() - started
    before_state, after_state = index_state(before), index_state(calibration)
    assert before_state != after_state
    assert "bulletin-2023-08" in after_state.issues
    changed = {a[0] for a in after_state.articles} ^ {a[0] for a in before_state.articles}
    assert len(changed) == 4  # one dropped, one added to 07, two in 08
    return World(before, after_state, before_state, inputs, events, seconds)


def _writer_steps(world: World) -> list[int]:
    """The writer's steps that change what is on disk.

    The fsyncs of the snapshot's files come after all of them are written, so the first one
    stands for the others (a kill between two of them finds the same files on disk).
    """
    steps: list[tuple[int, str, str]] = []
    for line in world.events:
        if line == "exit":
            continue
        number, when, what = line.split(" ", 2)
        first_fsync = not any(step[2].startswith("fsync(") for step in steps)
        pointer = "CURRENT.tmp" in what and when == "before"
        if not what.startswith("fsync(") or (first_fsync and when == "before") or pointer:
            steps.append((int(number), when, what))
    return [number for number, *_ in steps]


def _check_index(index_dir: Path, world: World, embedder) -> str:
    """The index loads, answers, and is the state before or the state after. Which one?"""
    state = index_state(index_dir)  # loads and checks every chunk against its article
    service = QAService(make_settings(index_dir), embedder=embedder)
    question, expected = SEED_QUESTIONS[0]
    answer = service.answer(question)
    assert answer.sentence is not None and expected in answer.sentence.text
    if state == world.before_state:
        return "before"
    if state == world.after_state:
        return "after"
    pytest.fail(f"{index_dir}: the index is neither the state before nor the state after")


def test_sigkill_at_any_moment_leaves_the_state_before_or_after(world, embedder, tmp_path):
    started = time.perf_counter()
    outcomes: list[tuple[str, str, str]] = []  # (where, killed or not, state found)
    trials: list[Path] = []
    real: Path | None = None  # the trial the real command re-runs

    def check(trial: Path, where: str, code: int) -> None:
        killed = "killed" if code == -signal.SIGKILL else f"finished first (exit {code})"
        state = _check_index(trial, world, embedder)
        leftovers = sorted(p.name for p in trial.iterdir()
                           if p.name.startswith((".tmp-", "CURRENT.tmp")))
        outcomes.append((where, killed, state))
        trials.append(trial)
        print(f"kill {len(outcomes):2d} at {where:<76} {killed:<26} → {state}"
              f"{' (left ' + ', '.join(leftovers) + ')' if leftovers else ''}")

    # Every step of the writer.
    for step in _writer_steps(world):
        trial = tmp_path / f"step-{step:02d}"
        shutil.copytree(world.before, trial)
        code, events = _run_traced(trial, world.inputs, pause_at=step)
        assert events[-1].startswith(f"{step} pause ")  # stopped where planned
        check(trial, world.events[step].split(" ", 1)[1], code)
        if " before rename(" in world.events[step]:
            real = trial
    # Moments at random over a whole run, until RANDOM_KILLS of them found it still running.
    rng = random.Random(6)  # the issue number: fixed, so a failure can be replayed
    for attempt in range(3 * RANDOM_KILLS):
        if sum(1 for where, killed, _ in outcomes if killed == "killed" and where.endswith(" s")
               ) >= RANDOM_KILLS:
            break
        delay = rng.uniform(0.0, world.seconds)
        trial = tmp_path / f"random-{attempt:02d}"
        shutil.copytree(world.before, trial)
        check(trial, f"{delay:.2f} s", _run_killed_after(trial, world.inputs, delay))

    kill_points = sum(1 for *_, killed, _ in outcomes if killed == "killed")
    assert kill_points >= MIN_KILL_POINTS, outcomes
    # Killed before the new CURRENT is in place: before; after it: after. Both happen.
    assert {state for *_, state in outcomes} == {"before", "after"}

    # Re-running the ingest completes it, whatever the killed run left behind: the real command
    # over a run killed with the finished snapshot still in its temporary directory, the same
    # code in this process (with the model already loaded) over the others.
    assert real is not None and list(real.glob(".tmp-*"))
    for trial in trials:
        if trial == real:
            result = run_qa_bot(_command(trial, world.inputs))
            assert result.code == 0, result.stderr
        else:
            _ingest(trial, embedder, world.inputs)
        assert index_state(trial) == world.after_state
        assert not list(trial.glob(".tmp-*"))
    print(f"{kill_points} kill points ({len(outcomes) - kill_points} runs finished before their "
          f"kill), one run {world.seconds:.1f} s, whole test "
          f"{time.perf_counter() - started:.0f} s")
