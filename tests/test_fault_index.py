"""A damaged, full or read-only index directory: every command says what is wrong in one line
and exits non-zero — never a traceback — and an ingest that cannot finish leaves the index in
use exactly as it was (no half-written snapshot, no temporary left behind).

The index here is built with `FakeEmbedder` (no model: these are tests of the storage layer, and
fast); the commands run in-process through `qa_bot.cli.main`, and a few through the real
`qa-bot` in a subprocess.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qa_bot.index import IndexCorrupt, IndexStore
from qa_bot.ingest import Ingestor
from tests.conftest import SEED_ISSUE, make_settings
from tests.fault_support import (
    FakeEmbedder,
    assert_one_line_error,
    index_state,
    run_cli,
    run_qa_bot,
    seed_articles,
    write_issue,
)

QUESTION = "广灵经开区有多少家再生金属企业？"


@pytest.fixture(scope="module")
def fake_index(tmp_path_factory) -> Path:
    """The seed issue indexed with FakeEmbedder; copy it before changing it."""
    directory = tmp_path_factory.mktemp("fake-index") / "index"
    report = Ingestor(make_settings(directory), FakeEmbedder(), show_progress=False).ingest(
        [SEED_ISSUE])
    assert report.added == 10
    return directory


@pytest.fixture(scope="module")
def new_issue(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("new-issue")
    return write_issue(folder / "bulletin-2023-09.jsonl", seed_articles()[:2], 9)


@pytest.fixture
def index(tmp_path, fake_index) -> Path:
    target = tmp_path / "index"
    shutil.copytree(fake_index, target)
    return target


def cli(monkeypatch, index_dir: Path, *argv: str):
    return run_cli(["--index-dir", str(index_dir), *argv], embedder=FakeEmbedder(),
                   monkeypatch=monkeypatch)


def files_of(directory: Path) -> dict[str, str]:
    """Every file under the index directory and a hash of its content (the lock excepted)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def live(directory: Path) -> Path:
    return directory / "snapshots" / IndexStore(directory).current_name()


# -- corrupted index files --------------------------------------------------------------------


def _garbage(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


def _truncate(name: str, fraction: float) -> Callable[[Path], None]:
    def corrupt(snapshot: Path) -> None:
        path = snapshot / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])

    return corrupt


def _replace(name: str, content: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def corrupt(snapshot: Path) -> None:
        path = snapshot / name
        old = path.read_bytes() if path.exists() else b""
        path.write_bytes(content(old) if callable(content) else content)

    return corrupt


def _remove(name: str) -> Callable[[Path], None]:
    def corrupt(snapshot: Path) -> None:
        path = snapshot / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return corrupt


def _manifest_field(**fields) -> Callable[[bytes], bytes]:
    def edit(old: bytes) -> bytes:
        data = json.loads(old)
        data.update(fields)
        return json.dumps(data).encode()

    return edit


def _first_line_replaced(line: bytes) -> Callable[[bytes], bytes]:
    return lambda old: line + b"\n" + old.split(b"\n", 1)[1]


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "dense.faiss empty": _truncate("dense.faiss", 0),
    "dense.faiss cut in half": _truncate("dense.faiss", 0.5),
    "dense.faiss garbage": _replace("dense.faiss", lambda old: _garbage(len(old))),
    "dense.faiss header garbage": _replace("dense.faiss", lambda old: old[:8] + _garbage(64)
                                           + old[72:]),
    "dense.faiss missing": _remove("dense.faiss"),
    "chunks.jsonl garbage": _replace("chunks.jsonl", lambda old: _garbage(len(old), 2)),
    "chunks.jsonl cut mid-line": _truncate("chunks.jsonl", 0.5),
    "chunks.jsonl empty": _truncate("chunks.jsonl", 0),
    "chunks.jsonl a list, not an object": _replace("chunks.jsonl",
                                                   _first_line_replaced(b"[1, 2]")),
    "chunks.jsonl a row without fields": _replace("chunks.jsonl",
                                                  _first_line_replaced(b'{"id": 0}')),
    "chunks.jsonl a row of the wrong types": _replace("chunks.jsonl", _first_line_replaced(
        b'{"id": "x", "tokens": 5, "article_id": 1, "ordinal": 0, "text": 7, "start": 0,'
        b' "end": 1, "issue": "i", "title": "t"}')),
    "chunks.jsonl missing": _remove("chunks.jsonl"),
    "articles.jsonl garbage": _replace("articles.jsonl", lambda old: _garbage(len(old), 3)),
    "articles.jsonl a number per line": _replace("articles.jsonl", _first_line_replaced(b"5")),
    "manifest.json not JSON": _replace("manifest.json", b"{not json"),
    "manifest.json empty": _replace("manifest.json", b""),
    "manifest.json a list": _replace("manifest.json", b"[]"),
    "manifest.json null": _replace("manifest.json", b"null"),
    "manifest.json garbage": _replace("manifest.json", _garbage(500, 4)),
    "manifest.json unknown fields": _replace("manifest.json", _manifest_field(surprise=1)),
    "manifest.json fields of the wrong type": _replace(
        "manifest.json", _manifest_field(model="x", articles=[1], issues=3, next_id="7")),
    "manifest.json tombstones not chunk ids": _replace(
        "manifest.json", _manifest_field(dense={"kind": "flat", "tombstones": ["x", True]})),
    "manifest.json missing": _remove("manifest.json"),
    "lexical/ missing": _remove("lexical"),
    "lexical vocabulary garbage": _replace("lexical/vocab.index.json", _garbage(300, 5)),
    "lexical matrix cut": _truncate("lexical/data.csc.index.npy", 0.3),
}


def _corrupt_pointer(content: bytes) -> Callable[[Path], None]:
    def corrupt(index_dir: Path) -> None:
        (index_dir / "CURRENT").write_bytes(content)

    return corrupt


POINTER_CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "CURRENT names a missing snapshot": _corrupt_pointer(b"20200101-000000-deadbeef\n"),
    "CURRENT garbage bytes": _corrupt_pointer(_garbage(40, 6)),
    "CURRENT a path outside": _corrupt_pointer(b"../../../etc\n"),
    "CURRENT target deleted": lambda index_dir: shutil.rmtree(live(index_dir)),
    "CURRENT target a file": lambda index_dir: (
        shutil.rmtree(live(index_dir)), live(index_dir).write_text("x")),
}


@pytest.mark.parametrize("command", ["ask", "stats", "ingest"])
@pytest.mark.parametrize("damage", [*CORRUPTIONS, *POINTER_CORRUPTIONS])
def test_damaged_index_is_a_one_line_error_and_is_left_alone(damage, command, index, new_issue,
                                                              monkeypatch):
    if damage in CORRUPTIONS:
        CORRUPTIONS[damage](live(index))
    else:
        POINTER_CORRUPTIONS[damage](index)
    before = files_of(index)
    argv = {"ask": ["ask", QUESTION], "stats": ["stats"], "ingest": ["ingest", str(new_issue)]}
    result = cli(monkeypatch, index, *argv[command])
    if command == "stats" and result.code == 0:
        # stats reads the manifest only: damage elsewhere shows when the index is loaded.
        assert not damage.startswith(("manifest", "CURRENT")), result.stdout
    else:
        assert_one_line_error(result, str(index))
        message = result.stderr
        assert "qa-bot ingest" in message or "qa-bot rebuild" in message  # says what to do
    assert files_of(index) == before  # nothing written, nothing half-written


def test_damage_in_an_old_snapshot_does_not_matter(index, new_issue, monkeypatch):
    """Only the live snapshot is read; an ingest writes a new one from it."""
    assert cli(monkeypatch, index, "ingest", str(new_issue)).code == 0
    old = sorted((index / "snapshots").iterdir())[0]
    assert old.name != IndexStore(index).current_name()
    CORRUPTIONS["dense.faiss garbage"](old)
    CORRUPTIONS["manifest.json not JSON"](old)
    assert cli(monkeypatch, index, "ask", QUESTION, "--json").code == 0


def test_index_directory_that_is_a_file(tmp_path, monkeypatch):
    path = tmp_path / "index"
    path.write_text("not a directory")
    for argv in (["ask", QUESTION], ["stats"], ["ingest", str(SEED_ISSUE)]):
        assert_one_line_error(cli(monkeypatch, path, *argv))


def test_reader_retries_when_a_writer_prunes_the_snapshot_it_was_reading(index, monkeypatch):
    """CURRENT read, then (before the manifest is read) a writer makes a new snapshot live and
    prunes the old one: the reader loads the new one instead of reporting damage."""
    store = IndexStore(index)
    old_name = store.current_name()
    shadow = index.parent / "spare"
    shutil.copytree(live(index), shadow)
    real_load = IndexStore._load
    swapped = []

    def load_after_swap(self, name):
        if not swapped:
            swapped.append(name)
            (index / "snapshots" / "99999999-999999-newer000").parent.mkdir(exist_ok=True)
            shutil.copytree(shadow, index / "snapshots" / "99999999-999999-newer000")
            (index / "CURRENT").write_text("99999999-999999-newer000\n")
            shutil.rmtree(index / "snapshots" / old_name)
        return real_load(self, name)

    monkeypatch.setattr(IndexStore, "_load", load_after_swap)
    snapshot = store.load()
    assert swapped == [old_name]
    assert snapshot.name == "99999999-999999-newer000"


@pytest.mark.slow
def test_missing_manifest_in_a_real_process(index):
    (live(index) / "manifest.json").unlink()
    for argv in (["ask", QUESTION], ["stats"]):
        assert_one_line_error(run_qa_bot(["--index-dir", str(index), *argv]), "manifest")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["dense.faiss garbage", "dense.faiss header garbage",
                                    "chunks.jsonl a list, not an object",
                                    "manifest.json fields of the wrong type"])
def test_damaged_index_in_a_real_process(damage, index):
    """The real command, so that a crash inside FAISS or a traceback would show."""
    CORRUPTIONS[damage](live(index))
    result = run_qa_bot(["--index-dir", str(index), "ask", QUESTION])
    assert result.code == 2
    assert_one_line_error(result, "damaged")


# -- a full disk ---------------------------------------------------------------------------------


def _mount_tmpfs(path: Path, size: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 16 MB file system (tmpfs), where a write past its size fails with ENOSPC."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 16 << 20):
        pytest.skip("mounting a tmpfs needs root and CAP_SYS_ADMIN; the disk-full path is "
                    "still covered by test_disk_full_at_every_write_step (injected ENOSPC)")
    try:
        yield disk
    finally:
        _umount(disk)


def _fill(disk: Path, leave: int) -> Path:
    """Use up the disk but `leave` bytes."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    with filler.open("wb") as handle:
        if free > leave:
            os.posix_fallocate(handle.fileno(), 0, free - leave)
    return filler


@pytest.mark.slow
def test_disk_full_during_ingest_leaves_the_index_as_it_was(small_disk, fake_index, new_issue,
                                                             monkeypatch):
    index = small_disk / "index"
    shutil.copytree(fake_index, index)
    # How much the new snapshot takes, measured with a successful ingest on a copy.
    probe = small_disk / "probe"
    shutil.copytree(fake_index, probe)
    assert cli(monkeypatch, probe, "ingest", str(new_issue)).code == 0
    needed = sum(-(-p.stat().st_size // 4096) * 4096 for p in live(probe).rglob("*")
                 if p.is_file()) + 4096  # + CURRENT.tmp
    shutil.rmtree(probe)

    state, before = index_state(index), files_of(index)
    tried = []
    for leave in sorted({0, 4096, needed // 4, needed // 2, 3 * needed // 4, needed - 4096}):
        filler = _fill(small_disk, leave)
        result = cli(monkeypatch, index, "ingest", str(new_issue))
        assert_one_line_error(result, "cannot write the index", "MB free")
        assert files_of(index) == before and index_state(index) == state
        assert not list(index.glob(".tmp-*"))
        # A full disk does not stop anyone from asking.
        assert cli(monkeypatch, index, "ask", QUESTION).code == 0
        filler.unlink()
        tried.append(leave)
    assert len(tried) >= 5
    result = cli(monkeypatch, index, "ingest", str(new_issue))
    assert result.code == 0, result.stderr
    assert "bulletin-2023-09" in index_state(index).issues


class _FailAt:
    """Wraps `os` for qa_bot.index: the Nth fsync/rename/replace fails with `error`."""

    def __init__(self, fail_at: int, error: int) -> None:
        self.fail_at, self.error, self.calls = fail_at, error, 0

    def __getattr__(self, name: str):
        real = getattr(os, name)
        if name not in ("fsync", "rename", "replace"):
            return real

        def step(*args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise OSError(self.error, os.strerror(self.error))
            return real(*args, **kwargs)

        return step


@pytest.mark.slow
def test_disk_full_at_every_write_step(index, new_issue, tmp_path, monkeypatch):
    """ENOSPC injected at each fsync, rename and replace the writer makes, in turn (works
    without root): either the command fails in one line and the index is the one before, or
    (a failure after CURRENT was replaced, which nothing can undo) it succeeds."""
    import qa_bot.index

    counter = _FailAt(0, 0)
    monkeypatch.setattr(qa_bot.index, "os", counter)
    probe = tmp_path / "probe"
    shutil.copytree(index, probe)
    assert cli(monkeypatch, probe, "ingest", str(new_issue)).code == 0
    steps, after = counter.calls, index_state(probe)
    assert steps >= 10
    state, before = index_state(index), files_of(index)
    outcomes = []
    for fail_at in range(1, steps + 1):
        trial = tmp_path / f"trial-{fail_at}"
        shutil.copytree(index, trial)
        monkeypatch.setattr(qa_bot.index, "os", _FailAt(fail_at, errno.ENOSPC))
        result = cli(monkeypatch, trial, "ingest", str(new_issue))
        monkeypatch.setattr(qa_bot.index, "os", os)
        if result.code == 0:
            assert index_state(trial) == after
            outcomes.append("after")
            continue
        assert_one_line_error(result, "No space left on device")
        assert files_of(trial) == before and index_state(trial) == state, fail_at
        assert not list(trial.glob(".tmp-*")) and not (trial / "CURRENT.tmp").exists()
        outcomes.append("before")
    assert outcomes.count("before") >= steps - 2, outcomes


# -- a read-only index directory -----------------------------------------------------------------


@pytest.fixture
def read_only_index(tmp_path, fake_index) -> Iterator[Path]:
    """The index on a file system mounted read-only (root), or with its permissions taken away
    (anyone else: root ignores permissions)."""
    if os.geteuid() != 0:
        index = tmp_path / "index"
        shutil.copytree(fake_index, index)
        for path in [index, *index.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            yield index
        finally:
            for path in [index, *index.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
        return
    disk = tmp_path / "ro"
    if not _mount_tmpfs(disk, 16 << 20):
        pytest.skip("as root, a read-only index needs a read-only mount (CAP_SYS_ADMIN)")
    try:
        shutil.copytree(fake_index, disk / "index")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        yield disk / "index"
    finally:
        _umount(disk)


def test_read_only_index_answers_but_refuses_to_ingest(read_only_index, new_issue, monkeypatch):
    before = files_of(read_only_index)
    result = cli(monkeypatch, read_only_index, "ingest", str(new_issue))
    assert_one_line_error(result)
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr
    assert files_of(read_only_index) == before
    answered = cli(monkeypatch, read_only_index, "ask", QUESTION, "--json")
    assert answered.code == 0, answered.stderr
    assert json.loads(answered.stdout)["passages"]
    assert cli(monkeypatch, read_only_index, "stats").code == 0


def test_store_raises_index_corrupt_not_something_else(index):
    """The same guarantee at the library level, for the bot and other callers."""
    (live(index) / "chunks.jsonl").write_text("[1, 2]\n")
    with pytest.raises(IndexCorrupt, match="damaged"):
        IndexStore(index).load()
