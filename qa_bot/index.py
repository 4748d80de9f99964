"""The index on disk: immutable snapshots, switched atomically.

Layout of the index directory (`embeddings/` by default)::

    CURRENT                  name of the live snapshot (replaced atomically)
    snapshots/<name>/        one complete, immutable index
        manifest.json        what built it: model, fingerprint, prompts, chunker, tokenizer,
                             per-article content hashes, chunk ids, format version
        dense.faiss          FAISS index with stable int64 ids (IndexIDMap2 over flat or HNSW)
        chunks.jsonl         chunk table, sorted by id, with each chunk's BM25 tokens
        articles.jsonl       the articles in full (for "show article" and re-embedding)
        lexical/             bm25s matrix, rows aligned with chunks.jsonl
    .lock                    held by a writer for the whole of an ingest

A writer builds a snapshot in a temporary directory, fsyncs it, renames it into `snapshots/`
and only then replaces CURRENT. A crash at any moment leaves CURRENT naming the last complete
snapshot; readers never see a half-written index. Old snapshots are kept for a while so a
reader that has just read CURRENT can still load what it names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa_bot.lexical import LexicalIndex
from qa_bot.records import Article, Chunk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SNAPSHOTS_KEPT = 3


class IndexProblem(Exception):
    """Base for index problems; messages say what is wrong, where, and what to do."""


class IndexNotFound(IndexProblem):
    pass


class IndexCorrupt(IndexProblem):
    pass


class IndexMismatch(IndexProblem):
    pass


class IndexLocked(IndexProblem):
    pass


@dataclass
class Manifest:
    model: dict  # name, fingerprint, dimension, query_prompt, passage_prompt
    chunker: dict
    lexical: dict
    dense: dict = field(default_factory=lambda: {"kind": "flat"})
    articles: dict[str, dict] = field(default_factory=dict)  # id → hash, issue, chunk_ids
    issues: dict[str, dict] = field(default_factory=dict)  # issue → source, ingested_at
    next_id: int = 0
    built_at: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(**data)


class Snapshot:
    """A loaded, read-only index: chunks, dense vectors, BM25 and articles."""

    def __init__(
        self,
        name: str,
        manifest: Manifest,
        chunks: list[Chunk],
        ids: np.ndarray,
        tokens: list[list[str]],
        articles: dict[str, Article],
        dense,
        lexical: LexicalIndex,
    ) -> None:
        self.name = name
        self.manifest = manifest
        self.chunks = chunks
        self.ids = ids
        self.tokens = tokens
        self.articles = articles
        self.dense = dense
        self.lexical = lexical
        self._rows_by_zone: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.chunks)

    def rows_for_ids(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ids, ids)

    def rows_in_zone(self, zone: str) -> np.ndarray:
        if zone not in self._rows_by_zone:
            self._rows_by_zone[zone] = np.array(
                [row for row, chunk in enumerate(self.chunks) if chunk.zone == zone],
                dtype=np.int64,
            )
        return self._rows_by_zone[zone]

    def dense_search(
        self, query: np.ndarray, depth: int, allowed_rows: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top `depth` (row, cosine) for one normalised query vector."""
        import faiss

        if len(self) == 0 or depth <= 0:
            return []
        params = None
        if allowed_rows is not None:
            if allowed_rows.size == 0:
                return []
            selector = faiss.IDSelectorBatch(self.ids[allowed_rows])
            params = _search_params(self.manifest.dense, selector)
        elif self.manifest.dense.get("kind") == "hnsw":
            params = _search_params(self.manifest.dense, None)
        scores, ids = self.dense.search(
            query.reshape(1, -1).astype(np.float32), min(depth, len(self)), params=params
        )
        found = ids[0] >= 0
        rows = self.rows_for_ids(ids[0][found])
        return [(int(row), float(score)) for row, score in zip(rows, scores[0][found], strict=True)]

    def vectors_for_ids(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of existing chunks, so unchanged articles are never re-embedded."""
        import faiss

        if ids.size == 0:
            return np.zeros((0, self.manifest.model["dimension"]), dtype=np.float32)
        # One bulk copy out of the inner index, then reorder: per-id reconstruct is slow at 1M.
        stored_ids = faiss.vector_to_array(self.dense.id_map)
        inner = faiss.downcast_index(self.dense.index)
        stored = inner.reconstruct_n(0, inner.ntotal)
        order = np.argsort(stored_ids, kind="stable")
        positions = order[np.searchsorted(stored_ids[order], ids)]
        return np.ascontiguousarray(stored[positions], dtype=np.float32)


def _search_params(dense_settings: dict, selector):
    import faiss

    if dense_settings.get("kind") == "hnsw":
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(dense_settings.get("ef_search", 128))
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def build_dense_index(vectors: np.ndarray, ids: np.ndarray, dense_settings: dict):
    """IndexIDMap2 over exact inner product, or over HNSW for large corpora."""
    import faiss

    dimension = vectors.shape[1]
    if dense_settings.get("kind") == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, int(dense_settings.get("m", 32)),
                                    faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(dense_settings.get("ef_construction", 80))
    else:
        inner = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


class IndexStore:
    """Reads and atomically writes snapshots in one index directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def snapshots_dir(self) -> Path:
        return self.directory / "snapshots"

    def current_name(self) -> str | None:
        try:
            name = (self.directory / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IndexCorrupt(f"{self.directory}/CURRENT: cannot be read ({exc})") from exc
        return name or None

    def exists(self) -> bool:
        return self.current_name() is not None

    # -- reading ---------------------------------------------------------------------------
    def read_manifest(self) -> Manifest:
        name = self._require_current()
        return self._read_manifest(self.snapshots_dir / name)

    def load(self) -> Snapshot:
        """Load the live snapshot; retries once if a writer swapped it while we were reading."""
        for attempt in (1, 2):
            name = self._require_current()
            try:
                return self._load(name)
            except FileNotFoundError as exc:
                if attempt == 2 or self.current_name() == name:
                    raise IndexCorrupt(
                        f"{self.snapshots_dir / name}: {Path(exc.filename or '').name or 'a file'}"
                        f" is missing. {_REBUILD_HINT.format(dir=self.directory)}"
                    ) from exc
        raise AssertionError("unreachable")

    def _require_current(self) -> str:
        name = self.current_name()
        if name is None:
            raise IndexNotFound(
                f"no index in {self.directory}. Build it with `qa-bot ingest corpus/` "
                "(or point --index-dir / QA_BOT_INDEX_DIR at an existing index)."
            )
        return name

    def _read_manifest(self, directory: Path) -> Manifest:
        path = directory / "manifest.json"
        try:
            manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise IndexCorrupt(
                f"{path}: manifest missing. {_REBUILD_HINT.format(dir=self.directory)}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise IndexCorrupt(
                f"{path}: manifest unreadable ({exc}). {_REBUILD_HINT.format(dir=self.directory)}"
            ) from exc
        if manifest.format_version != FORMAT_VERSION:
            raise IndexMismatch(
                f"{path}: index format {manifest.format_version}, this qa-bot reads "
                f"{FORMAT_VERSION}. Run `qa-bot rebuild --index-dir {self.directory}`."
            )
        return manifest

    def _load(self, name: str) -> Snapshot:
        import faiss

        directory = self.snapshots_dir / name
        manifest = self._read_manifest(directory)
        try:
            chunks, ids, tokens = [], [], []
            with (directory / "chunks.jsonl").open(encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    ids.append(row.pop("id"))
                    tokens.append(row.pop("tokens"))
                    chunks.append(Chunk.from_dict(row))
            articles = {}
            with (directory / "articles.jsonl").open(encoding="utf-8") as handle:
                for line in handle:
                    article = Article(**json.loads(line))
                    articles[article.article_id] = article
            dense = faiss.read_index(str(directory / "dense.faiss"))
            lexical = LexicalIndex.load(directory / "lexical")
        except FileNotFoundError:
            raise
        except (ValueError, TypeError, KeyError, RuntimeError, OSError) as exc:
            raise IndexCorrupt(
                f"{directory}: unreadable ({type(exc).__name__}: {exc}). "
                f"{_REBUILD_HINT.format(dir=self.directory)}"
            ) from exc
        id_array = np.asarray(ids, dtype=np.int64)
        if dense.ntotal != len(chunks) or lexical.size != len(chunks):
            raise IndexCorrupt(
                f"{directory}: {len(chunks)} chunks but {dense.ntotal} vectors / "
                f"{lexical.size} BM25 rows. {_REBUILD_HINT.format(dir=self.directory)}"
            )
        return Snapshot(name, manifest, chunks, id_array, tokens, articles, dense, lexical)

    # -- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer_lock(self, wait: bool = True) -> Iterator[None]:
        """Only one ingest at a time; readers never need the lock."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a") as handle:
            flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError as exc:
                raise IndexLocked(
                    f"{self.directory} is being written by another qa-bot process; "
                    "wait for it to finish"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(
        self,
        manifest: Manifest,
        chunks: list[Chunk],
        ids: np.ndarray,
        tokens: list[list[str]],
        vectors: np.ndarray,
        articles: list[Article],
        lexical: LexicalIndex | None = None,
    ) -> str:
        """Write a complete snapshot and make it live. Call under writer_lock()."""
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        chunks = [chunks[i] for i in order]
        tokens = [tokens[i] for i in order]
        vectors = vectors[order] if len(order) else vectors
        manifest.built_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        temporary = self.directory / f".tmp-{name}"
        temporary.mkdir()
        try:
            self._write_files(temporary, manifest, chunks, ids, tokens, vectors, articles, lexical)
            final = self.snapshots_dir / name
            os.rename(temporary, final)
            _fsync_directory(self.snapshots_dir)
            pointer = self.directory / "CURRENT.tmp"
            with pointer.open("w", encoding="utf-8") as handle:
                handle.write(name + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(pointer, self.directory / "CURRENT")
            _fsync_directory(self.directory)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        self._prune(keep=name)
        log.info("index snapshot %s is live (%d chunks)", name, len(chunks))
        return name

    def _write_files(self, directory, manifest, chunks, ids, tokens, vectors, articles, lexical):
        import faiss

        dense = build_dense_index(vectors, ids, manifest.dense)
        faiss.write_index(dense, str(directory / "dense.faiss"))
        with (directory / "chunks.jsonl").open("w", encoding="utf-8") as handle:
            for chunk_id, chunk, chunk_tokens in zip(ids, chunks, tokens, strict=True):
                row = {"id": int(chunk_id), **chunk.to_dict(), "tokens": chunk_tokens}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        with (directory / "articles.jsonl").open("w", encoding="utf-8") as handle:
            for article in articles:
                handle.write(json.dumps(asdict(article), ensure_ascii=False) + "\n")
        (lexical or LexicalIndex.build(tokens)).save(directory / "lexical")
        # The manifest goes last: a snapshot directory with a manifest is a complete one.
        (directory / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
        for path in directory.rglob("*"):
            if path.is_file():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_directory(directory)

    def _prune(self, keep: str) -> None:
        snapshots = sorted(p for p in self.snapshots_dir.iterdir() if p.is_dir())
        old = [p for p in snapshots if p.name != keep][: max(0, len(snapshots) - SNAPSHOTS_KEPT)]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)

    def _remove_stale_temporaries(self) -> None:
        # Left by a writer that was killed; we hold the writer lock, so none is in progress.
        for path in self.directory.glob(".tmp-*"):
            shutil.rmtree(path, ignore_errors=True)


_REBUILD_HINT = (
    "The index in {dir} is damaged: delete it and run `qa-bot ingest corpus/` to rebuild "
    "from the bulletin files."
)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
