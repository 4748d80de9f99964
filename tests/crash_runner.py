"""`qa-bot ARGS...` — the real command line — with the index writer's file-system steps made
visible, so that a test can SIGKILL it at an exact step of writing a snapshot.

Used by tests/test_fault_crash.py as ``python tests/crash_runner.py --index-dir D ingest ...``.
Nothing in the product changes: the module `os` and `shutil` that qa_bot.index sees are
wrapped so that each fsync, rename, replace and rmtree is announced, before and after, as a line
``N before|after what`` on the file descriptor in $CRASH_EVENTS_FD. With $CRASH_PAUSE_AT=N the
process stops at step N (announcing it as ``N pause ...``) and waits to be killed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time


def main() -> int:
    events = os.fdopen(int(os.environ["CRASH_EVENTS_FD"]), "w", buffering=1)
    pause_at = int(os.environ.get("CRASH_PAUSE_AT", "-1"))
    steps = iter(range(1 << 30))

    def step(when: str, what: str) -> None:
        number = next(steps)
        events.write(f"{number} {when} {what}\n")
        if number == pause_at:
            events.write(f"{number} pause {what}\n")
            while True:  # until SIGKILL
                time.sleep(60)

    class Traced:
        def __init__(self, module, names: set[str]) -> None:
            self._module, self._names = module, names

        def __getattr__(self, name: str):
            real = getattr(self._module, name)
            if name not in self._names:
                return real

            def traced(*args, **kwargs):
                what = f"{name}({', '.join(_describe(a) for a in args)})"
                step("before", what)
                result = real(*args, **kwargs)
                step("after", what)
                return result

            return traced

    import qa_bot.index

    qa_bot.index.os = Traced(os, {"fsync", "rename", "replace"})
    qa_bot.index.shutil = Traced(shutil, {"rmtree"})
    # Steps with no system call of their own: the temporary directory made, the files written.
    store = qa_bot.index.IndexStore
    for name in ("_remove_stale_temporaries", "_write_files", "_prune"):
        setattr(store, name, _announced(getattr(store, name), name, step))
    from qa_bot.cli import main as qa_bot_main

    code = qa_bot_main(sys.argv[1:])
    events.write("exit\n")
    return code


def _announced(method, name: str, step):
    def wrapper(*args, **kwargs):
        step("before", name)
        result = method(*args, **kwargs)
        step("after", name)
        return result

    return wrapper


def _describe(argument) -> str:
    if isinstance(argument, int):  # a file descriptor: say which file
        try:
            argument = os.readlink(f"/proc/self/fd/{argument}")
        except OSError:
            return str(argument)
    path = str(argument)
    parts = path.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else path


if __name__ == "__main__":
    sys.exit(main())
