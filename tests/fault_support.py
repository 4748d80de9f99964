"""Helpers for the fault and bad-input tests: small extra issues made from the seed's articles,
what an index directory holds (to compare "before" and "after"), and the CLI run in-process
with the session's model.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qa_bot.index import IndexStore
from qa_bot.parsing import load_file
from qa_bot.records import Article
from tests.conftest import REPO_ROOT, SEED_ISSUE

QA_BOT = Path(sys.executable).with_name("qa-bot")
# Commands run in a subprocess get the built-in settings, as make_settings() gives the tests in
# this process: the repository's config/qa-bot.toml may say another chunker, and is edited.
DEFAULT_SETTINGS = Path(__file__).resolve().parent / "fixtures" / "default-settings.toml"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for `qa-bot` in a subprocess: offline, built-in settings, same model."""
    cache = os.environ.get("QA_BOT_MODEL_CACHE", "~/.cache/qa-bot/models")
    return {**os.environ, "HF_HUB_OFFLINE": "1", "QA_BOT_CONFIG": str(DEFAULT_SETTINGS),
            "QA_BOT_MODEL_CACHE_DIR": cache, **extra}

# Questions about the seed issue, with what the answer must contain.
SEED_QUESTIONS = [
    ("广灵经开区有多少家再生金属企业？", "13家"),
    ("丁小强要求用好多少种招商模式？", "12种"),
]


def seed_articles() -> list[Article]:
    articles, _ = load_file(SEED_ISSUE)
    return articles


def write_issue(
    path: Path,
    articles: list[Article],
    month: int,
    edit: dict[int, str] | None = None,
) -> Path:
    """A JSONL issue made of seed articles, dated and worded for `month` so that its chunks
    differ from the seed's; `edit` appends a sentence to the article at that position."""
    edit = edit or {}
    with path.open("w", encoding="utf-8") as handle:
        for position, article in enumerate(articles):
            text = article.text.replace("6月", f"{month}月") + edit.get(position, "")
            row = {
                "id": f"{path.stem}-{article.article_id.rsplit('/', 1)[-1]}",
                "title": f"{article.title}（{month}月）",
                "text": text,
                "zone": article.zone,
                "byline": article.byline,
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@dataclass(frozen=True)
class IndexState:
    """What an index holds, independent of snapshot names and timestamps."""

    articles: tuple  # (article_id, hash, issue, chunk ids)
    chunks: tuple  # (chunk id, article_id, text)
    issues: tuple
    next_id: int

    @property
    def chunk_texts(self) -> set[str]:
        return {text for _, _, text in self.chunks}


def index_state(directory: Path) -> IndexState | None:
    """The live snapshot, checked for consistency; None when there is no index at all.

    Consistency: every chunk belongs to an article of the manifest, is that article's text
    between its offsets (so no chunk of an older version of the article survives), and the
    chunk ids are exactly those the manifest lists; the store checks vectors and BM25 rows.
    """
    store = IndexStore(directory)
    if not store.exists():
        return None
    snapshot = store.load()
    manifest = snapshot.manifest
    listed = sorted(i for entry in manifest.articles.values() for i in entry["chunk_ids"])
    assert listed == sorted(int(i) for i in snapshot.ids), "manifest and chunk table disagree"
    assert set(snapshot.articles) == set(manifest.articles)
    for chunk in snapshot.chunks:
        article = snapshot.articles[chunk.article_id]
        assert manifest.articles[chunk.article_id]["hash"] == article.content_hash()
        assert chunk.text == article.text[chunk.start : chunk.end], "stale chunk"
    return IndexState(
        articles=tuple(sorted(
            (aid, e["hash"], e["issue"], tuple(e["chunk_ids"]))
            for aid, e in manifest.articles.items()
        )),
        chunks=tuple(sorted(
            (int(i), c.article_id, c.text) for i, c in zip(snapshot.ids, snapshot.chunks,
                                                           strict=True)
        )),
        issues=tuple(sorted(manifest.issues)),
        next_id=manifest.next_id,
    )


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(argv: list[str], embedder=None, monkeypatch=None) -> CliResult:
    """`qa-bot ARGV` in this process; with `embedder`, every command uses that loaded model."""
    from qa_bot import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        if embedder is not None:
            assert monkeypatch is not None
            for where in ("qa_bot.embedding", "qa_bot.service"):
                monkeypatch.setattr(f"{where}.SentenceTransformerEmbedder",
                                    lambda *args, **kwargs: embedder)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        code = cli.main(["--config", str(DEFAULT_SETTINGS), *argv])
    return CliResult(code, out.getvalue(), err.getvalue())


def run_qa_bot(argv: list[str], timeout: float = 300, **kwargs) -> CliResult:
    """The real `qa-bot` console script in a subprocess."""
    env = subprocess_env(**kwargs.pop("env", {}))
    proc = subprocess.run([str(QA_BOT), *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env=env, **kwargs)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """A failed command: non-zero exit, no traceback, one `qa-bot: error:` line saying why."""
    assert result.code != 0, result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("qa-bot: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


class FakeEmbedder:
    """The Embedder protocol without a model: deterministic vectors from character bigrams.

    For tests of storage and input handling, where the model's meaning is beside the point and
    loading it would only cost time. Its fingerprint differs from the real model's, so an index
    built with it is refused by a service with the real one.
    """

    name = "bundled:multilingual-e5-small"
    dimension = 64

    def warm_up(self) -> None:
        pass

    def fingerprint(self) -> str:
        return "sha256:fake-bigram-embedder"

    def count_tokens(self, text: str) -> int:
        from qa_bot.chunking import estimate_tokens

        return estimate_tokens(text)

    def encode_queries(self, texts: list[str]):
        return self._encode(texts)

    def encode_passages(self, texts: list[str], show_progress: bool = False):
        return self._encode(texts)

    def _encode(self, texts: list[str]):
        import zlib

        import numpy as np

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for a, b in itertools.pairwise(text):
                vectors[row, zlib.crc32((a + b).encode()) % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)
