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
import re
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
# A zone filter over at most this many chunks is searched exactly in an HNSW index.
EXACT_FILTER_MAX = 50_000


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


class IndexWriteFailed(IndexProblem):
    """A snapshot could not be written (disk full, read-only, ...); the live one is unchanged."""


def recorded_precision(model_entry: dict) -> str:
    """The precision an index was embedded at; indexes from before the setting are fp32."""
    return model_entry.get("precision", "fp32")


@dataclass
class Manifest:
    model: dict  # name, fingerprint, dimension, query_prompt, passage_prompt, precision
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
        """Raises ValueError or TypeError for anything but a manifest this code wrote."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object was expected, not {type(data).__name__}")
        manifest = cls(**data)
        for name in ("model", "chunker", "lexical", "dense", "articles", "issues"):
            if not isinstance(getattr(manifest, name), dict):
                raise ValueError(f"field {name!r} is not an object")
        if not all(isinstance(entry, dict) and isinstance(entry.get("chunk_ids"), list)
                   for entry in manifest.articles.values()):
            raise ValueError("field 'articles' holds entries without chunk ids")
        if not isinstance(manifest.next_id, int) or not isinstance(manifest.format_version, int):
            raise ValueError("fields 'next_id' and 'format_version' must be integers")
        tombstones = manifest.dense.get("tombstones", [])
        if not isinstance(tombstones, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in tombstones
        ):
            raise ValueError("field 'dense.tombstones' is not a list of chunk ids")
        return manifest


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
        self._dense_extras: dict[str, object] = {}  # selectors and maps built on first use

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

    @property
    def tombstones(self) -> list[int]:
        """Ids still in the HNSW graph whose chunks were removed (HNSW cannot delete)."""
        return self.manifest.dense.get("tombstones", [])

    def dense_search(
        self, query: np.ndarray, depth: int, allowed_rows: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top `depth` (row, cosine) for one normalised query vector.

        Only chunks of this snapshot are ever returned: the ids of removed or replaced chunks
        that an HNSW graph still holds (tombstones) are filtered out inside the search, and
        every id found is checked against the chunk table besides.
        """
        import faiss

        if len(self) == 0 or depth <= 0:
            return []
        depth = min(depth, len(self))
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        hnsw = self.manifest.dense.get("kind") == "hnsw"
        if allowed_rows is not None:
            if allowed_rows.size == 0:
                return []
            if hnsw and allowed_rows.size <= EXACT_FILTER_MAX:
                # A small filtered set: exact scores over its vectors beat a graph walk that
                # must skip almost everything it visits.
                return self._exact_search(query[0], allowed_rows, depth)
            selector = faiss.IDSelectorBatch(self.ids[allowed_rows])
            params = _search_params(self.manifest.dense, selector, depth)
        elif hnsw:
            params = _search_params(self.manifest.dense, self._tombstone_selector(), depth)
        else:
            params = None
        # One thread: a single query gains nothing from OpenMP, and on a busy machine waking a
        # second thread costs whole scheduler ticks (8 ms instead of 0.07 ms at 2k chunks).
        # The setting is per calling thread, so it is made here, in the thread that searches.
        faiss.omp_set_num_threads(1)
        scores, ids = self.dense.search(query, depth, params=params)
        found = ids[0] >= 0
        found_ids, found_scores = ids[0][found], scores[0][found]
        rows = np.minimum(self.rows_for_ids(found_ids), len(self.ids) - 1)
        live = self.ids[rows] == found_ids  # a tombstone never becomes someone else's row
        return [
            (int(row), float(score))
            for row, score in zip(rows[live], found_scores[live], strict=True)
        ]

    def _tombstone_selector(self):
        import faiss

        tombstones = self.tombstones
        if not tombstones:
            return None
        if "tombstones" not in self._dense_extras:
            batch = faiss.IDSelectorBatch(np.asarray(tombstones, dtype=np.int64))
            # Both kept here: the C++ batch must outlive the selector that points at it.
            self._dense_extras["tombstone_batch"] = batch
            self._dense_extras["tombstones"] = faiss.IDSelectorNot(batch)
        return self._dense_extras["tombstones"]

    def _storage_positions(self) -> np.ndarray:
        """Position in the dense index's storage of each row's vector."""
        import faiss

        if "positions" not in self._dense_extras:
            stored_ids = faiss.vector_to_array(self.dense.id_map)
            order = np.argsort(stored_ids, kind="stable")
            self._dense_extras["positions"] = order[np.searchsorted(stored_ids[order], self.ids)]
        return self._dense_extras["positions"]

    def _stored_vectors(self) -> np.ndarray:
        """The dense index's stored vectors, as a view (no copy) of its flat storage."""
        import faiss

        inner = faiss.downcast_index(self.dense.index)
        storage = faiss.downcast_index(inner.storage) if hasattr(inner, "storage") else inner
        dimension = storage.d
        return faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * dimension).reshape(
            storage.ntotal, dimension
        )

    def _exact_search(
        self, query: np.ndarray, rows: np.ndarray, depth: int
    ) -> list[tuple[int, float]]:
        vectors = self._stored_vectors()[self._storage_positions()[rows]]
        scores = vectors @ query
        depth = min(depth, len(rows))
        best = np.argpartition(-scores, depth - 1)[:depth]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(rows[i]), float(scores[i])) for i in best]

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


def _search_params(dense_settings: dict, selector, depth: int = 0):
    import faiss

    if dense_settings.get("kind") == "hnsw":
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(dense_settings.get("ef_search", 128)), depth)
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def dense_settings_for(
    chunks: int,
    approximate_above: int,
    m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
) -> dict:
    """The manifest's `dense` entry for an index of `chunks`: exact up to the threshold."""
    if chunks > approximate_above:
        return {"kind": "hnsw", "m": int(m), "ef_construction": int(ef_construction),
                "ef_search": int(ef_search), "tombstones": []}
    return {"kind": "flat"}


def same_graph(a: dict, b: dict) -> bool:
    """Whether an HNSW graph built under `a` can be extended under `b` (ef_search is free)."""
    keys = ("kind", "m", "ef_construction")
    return a.get("kind") == "hnsw" and all(a.get(k) == b.get(k) for k in keys)


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
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building a graph uses every core
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def extend_dense_index(base, vectors: np.ndarray, ids: np.ndarray):
    """A copy of `base` (e.g. a loaded HNSW graph) with more vectors: nothing is rebuilt."""
    import faiss

    index = faiss.clone_index(base)
    if len(ids):
        faiss.omp_set_num_threads(os.cpu_count() or 1)
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
        path = self.directory / "CURRENT"
        try:
            name = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except NotADirectoryError as exc:
            raise IndexCorrupt(
                f"{self.directory} is not a directory; point --index-dir / QA_BOT_INDEX_DIR "
                "at an index directory (or at a new one to build)"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise IndexCorrupt(
                f"{path}: cannot be read ({exc}). {_REBUILD_HINT.format(dir=self.directory)}"
            ) from exc
        if name and not _SNAPSHOT_NAME.fullmatch(name):
            raise IndexCorrupt(
                f"{path}: names {name[:40]!r}, which is not a snapshot. "
                + _REBUILD_HINT.format(dir=self.directory)
            )
        return name or None

    def exists(self) -> bool:
        return self.current_name() is not None

    # -- reading ---------------------------------------------------------------------------
    def read_manifest(self) -> Manifest:
        name = self._require_current()
        return self._read_manifest(self.snapshots_dir / name)

    def load(self) -> Snapshot:
        """Load the live snapshot; retries if a writer swapped and pruned it while we read."""
        for attempt in (1, 2, 3):
            name = self._require_current()
            try:
                return self._load(name)
            except (FileNotFoundError, IndexCorrupt) as exc:
                if attempt < 3 and self.current_name() != name:
                    continue  # what we were reading was replaced, then pruned: read the new one
                if isinstance(exc, IndexCorrupt):
                    raise
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
        except (FileNotFoundError, NotADirectoryError) as exc:
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
                    row = _json_object(line)
                    ids.append(row.pop("id"))
                    tokens.append(row.pop("tokens"))
                    chunks.append(_checked_chunk(Chunk.from_dict(row)))
            articles = {}
            with (directory / "articles.jsonl").open(encoding="utf-8") as handle:
                for line in handle:
                    article = Article(**_json_object(line))
                    articles[article.article_id] = article
            id_array = np.asarray(ids, dtype=np.int64)
            dense = faiss.read_index(str(directory / "dense.faiss"))
            lexical = LexicalIndex.load(directory / "lexical")
        except FileNotFoundError:
            raise
        except (ValueError, TypeError, KeyError, RuntimeError, OSError) as exc:
            raise IndexCorrupt(
                f"{directory}: unreadable ({type(exc).__name__}: {exc}). "
                f"{_REBUILD_HINT.format(dir=self.directory)}"
            ) from exc
        tombstones = manifest.dense.get("tombstones", [])  # checked by Manifest.from_json
        if dense.ntotal != len(chunks) + len(tombstones) or lexical.size != len(chunks):
            raise IndexCorrupt(
                f"{directory}: {len(chunks)} chunks (+ {len(tombstones)} removed) but "
                f"{dense.ntotal} vectors / {lexical.size} BM25 rows. "
                f"{_REBUILD_HINT.format(dir=self.directory)}"
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
        vectors: np.ndarray | None,
        articles: list[Article],
        lexical: LexicalIndex | None = None,
        dense=None,
    ) -> str:
        """Write a complete snapshot and make it live. Call under writer_lock().

        `dense`, when given, is the finished FAISS index (an HNSW graph extended in place of
        a rebuild); `vectors` may then be None. Otherwise one is built from `vectors`.
        """
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        chunks = [chunks[i] for i in order]
        tokens = [tokens[i] for i in order]
        if dense is None:
            vectors = vectors[order] if len(order) else vectors
        manifest.built_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        temporary = self.directory / f".tmp-{name}"
        final = self.snapshots_dir / name
        pointer = self.directory / "CURRENT.tmp"
        try:
            self.snapshots_dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()
            temporary.mkdir()
            self._write_files(
                temporary, manifest, chunks, ids, tokens, vectors, articles, lexical, dense
            )
            os.rename(temporary, final)
            _fsync_directory(self.snapshots_dir)
            with pointer.open("w", encoding="utf-8") as handle:
                handle.write(name + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(pointer, self.directory / "CURRENT")
        except BaseException as exc:
            # Nothing of this snapshot may stay (on a full disk its files are what fills it),
            # unless CURRENT names it already: an interrupt just after the switch.
            shutil.rmtree(temporary, ignore_errors=True)
            with contextlib.suppress(OSError):
                pointer.unlink()
            switched = False
            with contextlib.suppress(IndexProblem):
                switched = self.current_name() == name
            if switched:
                raise
            shutil.rmtree(final, ignore_errors=True)
            if isinstance(exc, OSError | RuntimeError):  # faiss reports I/O errors as these
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                with contextlib.suppress(OSError):
                    reason = f"{reason}; {shutil.disk_usage(self.directory).free / 1e6:.1f} MB free"
                raise IndexWriteFailed(
                    f"cannot write the index in {self.directory} ({reason}). Check free disk "
                    "space and permissions; the index in use is unchanged."
                ) from exc
            raise
        try:
            _fsync_directory(self.directory)
        except OSError as exc:  # the new snapshot is live already; nothing to undo
            log.warning("%s: cannot fsync after switching snapshots: %s", self.directory, exc)
        self._prune(keep=name)
        log.info("index snapshot %s is live (%d chunks)", name, len(chunks))
        return name

    def _write_files(
        self, directory, manifest, chunks, ids, tokens, vectors, articles, lexical, dense=None
    ):
        import faiss

        if dense is None:
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


_SNAPSHOT_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")


def _json_object(line: str) -> dict:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError(f"a JSON object was expected, not {type(row).__name__}")
    return row


def _checked_chunk(chunk: Chunk) -> Chunk:
    if not (isinstance(chunk.text, str) and isinstance(chunk.article_id, str)
            and isinstance(chunk.start, int) and isinstance(chunk.end, int)):
        raise ValueError(f"chunk row of the wrong shape: {chunk!r:.80}")
    return chunk


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
