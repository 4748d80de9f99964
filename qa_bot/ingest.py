"""Adding, updating and removing issues: only what is new or changed is embedded.

An ingested file replaces its issue as a whole: articles whose content hash is unchanged keep
their chunks and vectors, changed ones get new chunks (the old ones are dropped in the same
snapshot, so no stale chunk is ever retrieved), and articles gone from the file are removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa_bot.chunking import SentenceChunker
from qa_bot.config import Settings
from qa_bot.embedding import Embedder
from qa_bot.index import (
    IndexMismatch,
    IndexNotFound,
    IndexStore,
    Manifest,
    Snapshot,
    recorded_precision,
)
from qa_bot.lexical import LexicalIndex, LexicalTokenizer
from qa_bot.parsing import INPUT_SUFFIXES, InputError, expand_paths, load_file  # noqa: F401
from qa_bot.records import Article, Chunk, SourceProblem
from qa_bot.zones import ZoneTable

log = logging.getLogger(__name__)

# What BM25 tokens are made of (Chunk.lexical_text); a change re-tokenizes kept chunks.
LEXICAL_TEXT = "zone title text byline_names"
# An HNSW graph is rebuilt when the ids of removed chunks it still holds exceed this share.
TOMBSTONE_REBUILD_FRACTION = 0.1


@dataclass
class IngestReport:
    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    warnings: list[SourceProblem] = field(default_factory=list)
    errors: list[SourceProblem] = field(default_factory=list)  # files refused, others went on
    snapshot: str | None = None  # None when nothing changed

    @property
    def changed(self) -> bool:
        return self.snapshot is not None

    def summary(self) -> str:
        if not self.changed and not self.errors:
            verdict = "nothing changed"
        elif not self.changed:
            verdict = "nothing ingested"
        else:
            verdict = f"index updated (snapshot {self.snapshot})"
        return (
            f"{verdict}: {self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed articles; {self.chunks_embedded} chunks embedded, "
            f"{self.chunks_total} in the index; {len(self.warnings)} warnings, "
            f"{len(self.errors)} files refused; {self.seconds:.1f} s"
        )


class Ingestor:
    """Keeps an index directory in step with the issues given to it."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: IndexStore | None = None,
        show_progress: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store or IndexStore(settings.index_path)
        self.show_progress = show_progress
        self._clock = clock

    # -- commands ----------------------------------------------------------------------------
    def ingest(self, paths: Iterable[Path]) -> IngestReport:
        started = self._clock()
        report = IngestReport()
        incoming: dict[str, list[Article]] = {}
        sources: dict[str, str] = {}
        skipped: list[Path] = []
        files = expand_paths(paths, skipped)
        report.warnings.extend(
            SourceProblem(str(path), 0, "skipped: not an issue file "
                          "(.txt, .md, .pdf, .docx, .html, .jsonl, .json)")
            for path in skipped
        )
        for path in files:
            report.files += 1
            try:
                articles, problems = load_file(path)
            except InputError as exc:
                report.errors.append(exc.problem)
                continue
            except OSError as exc:
                report.errors.append(SourceProblem(str(path), 0, f"cannot read: {exc.strerror}"))
                continue
            report.warnings.extend(problems)
            for article in articles:
                if article.issue in sources and sources[article.issue] != str(path):
                    report.errors.append(SourceProblem(
                        str(path), 0,
                        f"issue {article.issue!r} also comes from {sources[article.issue]}; "
                        "rename one of the files (the issue name is the file name)",
                    ))
                    break
                sources[article.issue] = str(path)
                incoming.setdefault(article.issue, []).append(article)
        with self.store.writer_lock():
            previous = self._load_previous()
            stored = previous.articles.values() if previous else ()
            kept = [a for a in stored if a.issue not in incoming]
            new_articles = [a for issue in incoming.values() for a in issue]
            old_hashes = previous.manifest.articles if previous else {}
            incoming_ids = {a.article_id for a in new_articles}
            for article in new_articles:
                old = old_hashes.get(article.article_id)
                if old is None:
                    report.added += 1
                elif old["hash"] != article.content_hash():
                    report.updated += 1
                else:
                    report.unchanged += 1
            if previous:
                report.removed = sum(
                    1 for article_id, entry in old_hashes.items()
                    if entry["issue"] in incoming and article_id not in incoming_ids
                )
            if report.added or report.updated or report.removed:
                issues = {issue: {"source": sources[issue]} for issue in incoming}
                report.snapshot, report.chunks_embedded, report.chunks_total = self._write(
                    previous, kept + new_articles, issues
                )
            elif previous is not None:
                report.chunks_total = len(previous)
        report.seconds = self._clock() - started
        return report

    def remove_issue(self, issue: str) -> IngestReport:
        started = self._clock()
        report = IngestReport()
        with self.store.writer_lock():
            previous = self._require_previous()
            remaining = [a for a in previous.articles.values() if a.issue != issue]
            report.removed = len(previous.articles) - len(remaining)
            if report.removed == 0:
                known = sorted({a.issue for a in previous.articles.values()})
                raise KeyError(f"no issue {issue!r} in {self.store.directory}; issues: {known}")
            report.snapshot, _, report.chunks_total = self._write(previous, remaining, {})
        report.seconds = self._clock() - started
        return report

    def rebuild(self) -> IngestReport:
        """Re-embed every stored article with the configured model and chunker."""
        started = self._clock()
        report = IngestReport()
        with self.store.writer_lock():
            manifest = self.store.read_manifest()
            articles = self._read_articles_for_rebuild()
            report.unchanged = len(articles)
            issues = {name: dict(entry) for name, entry in manifest.issues.items()}
            report.snapshot, report.chunks_embedded, report.chunks_total = self._write(
                None, articles, issues, fresh_issues=True
            )
        report.seconds = self._clock() - started
        return report

    # -- the work ----------------------------------------------------------------------------
    def _load_previous(self) -> Snapshot | None:
        try:
            snapshot = self.store.load()
        except IndexNotFound:
            return None
        self._check_compatible(snapshot.manifest)
        return snapshot

    def _require_previous(self) -> Snapshot:
        snapshot = self._load_previous()
        if snapshot is None:
            raise IndexNotFound(f"no index in {self.store.directory}; nothing to remove")
        return snapshot

    def _read_articles_for_rebuild(self) -> list[Article]:
        # The manifest check is skipped on purpose: a model change is what rebuild is for.
        return list(self.store.load().articles.values())

    def _check_compatible(self, manifest: Manifest) -> None:
        model = self.settings.model
        expected = {
            "name": model.name,
            "query_prompt": model.query_prompt,
            "passage_prompt": model.passage_prompt,
            "precision": model.precision,
        }
        recorded = {key: manifest.model.get(key) for key in expected}
        recorded["precision"] = recorded_precision(manifest.model)
        chunker = self._chunker_settings()
        if recorded != expected or manifest.chunker != chunker:
            raise IndexMismatch(
                f"the index in {self.store.directory} was built with model {recorded} and chunker "
                f"{manifest.chunker}; the configuration now says model {expected} and chunker "
                f"{chunker}. Run `qa-bot rebuild` to re-embed everything with the configuration, "
                "or restore the old settings."
            )

    def _chunker_settings(self) -> dict:
        chunking = self.settings.chunking
        return {"max_tokens": chunking.max_tokens, "overlap_sentences": chunking.overlap_sentences}

    def _chunker(self) -> SentenceChunker:
        chunking = self.settings.chunking
        return SentenceChunker(
            max_tokens=chunking.max_tokens,
            overlap_sentences=chunking.overlap_sentences,
            count_tokens=self.embedder.count_tokens,
        )

    def _write(
        self,
        previous: Snapshot | None,
        articles: list[Article],
        issues: dict[str, dict],
        fresh_issues: bool = False,
    ) -> tuple[str, int, int]:
        """Compose and write the snapshot holding exactly `articles`; returns name and counts."""
        old_entries = previous.manifest.articles if previous else {}
        reusable = {
            article.article_id
            for article in articles
            if article.article_id in old_entries
            and old_entries[article.article_id]["hash"] == article.content_hash()
        }
        zones = ZoneTable.build(
            (a.zone for a in articles),
            texts=(a.title + "\n" + a.text for a in articles),
            alias_file=Path(self.settings.zone_aliases),
        )
        tokenizer = LexicalTokenizer(zones.words())
        same_tokens = previous is not None and (
            previous.manifest.lexical.get("signature") == tokenizer.signature()
            and previous.manifest.lexical.get("text") == LEXICAL_TEXT
        )

        # Kept chunks: ids, vectors and (when the tokenizer is unchanged) tokens as they were.
        kept_rows = (
            [row for row, c in enumerate(previous.chunks) if c.article_id in reusable]
            if previous else []
        )
        chunks: list[Chunk] = [previous.chunks[row] for row in kept_rows] if previous else []
        ids = previous.ids[kept_rows] if previous else np.zeros(0, dtype=np.int64)
        tokens: list[list[str]] = (
            [previous.tokens[row] for row in kept_rows] if previous and same_tokens else
            tokenizer.tokenize_many(c.lexical_text for c in chunks)
        )

        fresh = [a for a in articles if a.article_id not in reusable]
        new_chunks: list[Chunk] = []
        if fresh:
            self.embedder.warm_up()
            if previous is not None:
                self._check_fingerprint(previous.manifest)
            chunker = self._chunker()
            for article in fresh:
                new_chunks.extend(chunker.chunk(article))
        new_vectors = self.embedder.encode_passages(
            [c.embed_text for c in new_chunks], show_progress=self.show_progress
        ) if new_chunks else None
        next_id = previous.manifest.next_id if previous else 0
        new_ids = np.arange(next_id, next_id + len(new_chunks), dtype=np.int64)

        all_chunks = chunks + new_chunks
        all_ids = np.concatenate([ids, new_ids])
        all_tokens = tokens + tokenizer.tokenize_many(c.lexical_text for c in new_chunks)
        dimension = self._dimension(previous)
        dense_entry, dense_index = self._dense(previous, ids, new_vectors, new_ids, dimension)
        all_vectors = None
        if dense_index is None:  # built from every vector: kept ones come out of the old index
            vectors = previous.vectors_for_ids(ids) if previous else None
            parts = [v for v in (vectors, new_vectors) if v is not None and len(v)]
            all_vectors = (
                np.vstack(parts) if parts else np.zeros((0, dimension), dtype=np.float32)
            )

        manifest = self._manifest(previous, dimension, tokenizer, fresh_issues)
        manifest.dense = dense_entry
        manifest.next_id = int(next_id + len(new_chunks))
        manifest.issues.update(
            {issue: {**entry, "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
             for issue, entry in issues.items()}
        )
        present_issues = {a.issue for a in articles}
        manifest.issues = {k: v for k, v in manifest.issues.items() if k in present_issues}
        chunk_ids_of: dict[str, list[int]] = {}
        for chunk, chunk_id in zip(all_chunks, all_ids, strict=True):
            chunk_ids_of.setdefault(chunk.article_id, []).append(int(chunk_id))
        manifest.articles = {
            a.article_id: {
                "hash": a.content_hash(),
                "issue": a.issue,
                "chunk_ids": chunk_ids_of.get(a.article_id, []),
            }
            for a in articles
        }
        name = self.store.write(
            manifest, all_chunks, all_ids, all_tokens, all_vectors, articles,
            lexical=LexicalIndex.build(_sorted_by_ids(all_tokens, all_ids)),
            dense=dense_index,
        )
        return name, len(new_chunks), len(all_chunks)

    def _dense(
        self,
        previous: Snapshot | None,
        kept_ids: np.ndarray,
        new_vectors: np.ndarray | None,
        new_ids: np.ndarray,
        dimension: int,
    ) -> tuple[dict, object | None]:
        """The manifest's `dense` entry, and the FAISS index when an HNSW graph is extended.

        Up to `approximate_above` chunks the index is exact (flat) and simply rebuilt. Above,
        it is HNSW; an ingest into an HNSW snapshot adds its new vectors to a copy of the
        stored graph instead of rebuilding it. HNSW cannot delete, so the ids of removed or
        replaced chunks become tombstones, listed in the manifest and filtered out of every
        search; when they pass TOMBSTONE_REBUILD_FRACTION of the index, it is rebuilt clean.
        None for the index means: build it from all vectors.
        """
        from qa_bot.index import dense_settings_for, extend_dense_index, same_graph

        retrieval = self.settings.retrieval
        total = len(kept_ids) + len(new_ids)
        wanted = dense_settings_for(
            total, retrieval.approximate_above, retrieval.hnsw_m,
            retrieval.hnsw_ef_construction, retrieval.hnsw_ef_search,
        )
        if previous is None or not same_graph(previous.manifest.dense, wanted):
            if wanted["kind"] != previous_kind(previous):
                log.info("dense index: %s for %d chunks", wanted["kind"], total)
            return wanted, None
        removed = np.setdiff1d(previous.ids, kept_ids, assume_unique=True)
        tombstones = sorted({int(i) for i in previous.tombstones} | {int(i) for i in removed})
        if len(tombstones) > TOMBSTONE_REBUILD_FRACTION * max(total, 1):
            log.info("rebuilding the HNSW graph: %d removed chunks in it, %d live",
                     len(tombstones), total)
            return wanted, None
        vectors = new_vectors if new_vectors is not None else np.zeros((0, dimension), np.float32)
        return {**wanted, "tombstones": tombstones}, extend_dense_index(
            previous.dense, vectors, new_ids
        )

    def _check_fingerprint(self, manifest: Manifest) -> None:
        recorded = manifest.model.get("fingerprint")
        if recorded and recorded != self.embedder.fingerprint():
            raise IndexMismatch(
                f"the index in {self.store.directory} was built with other weights under the "
                f"name {manifest.model.get('name')!r} (fingerprint {recorded}, now "
                f"{self.embedder.fingerprint()}). Run `qa-bot rebuild` to re-embed everything."
            )

    def _dimension(self, previous: Snapshot | None) -> int:
        if previous is not None:
            return int(previous.manifest.model["dimension"])
        return self.embedder.dimension

    def _manifest(
        self, previous: Snapshot | None, dimension: int, tokenizer: LexicalTokenizer, fresh: bool
    ) -> Manifest:
        model = self.settings.model
        if previous is not None and not fresh:
            model_entry = dict(previous.manifest.model)
            issues = dict(previous.manifest.issues)
        else:
            self.embedder.warm_up()
            model_entry = {
                "name": model.name,
                "fingerprint": self.embedder.fingerprint(),
                "dimension": dimension,
                "query_prompt": model.query_prompt,
                "passage_prompt": model.passage_prompt,
                "precision": model.precision,
            }
            issues = {}
        return Manifest(
            model=model_entry,
            chunker=self._chunker_settings(),
            lexical={"signature": tokenizer.signature(), "user_words": tokenizer.user_words,
                     "text": LEXICAL_TEXT},
            dense={"kind": "flat"},
            issues=issues,
        )


def previous_kind(previous: Snapshot | None) -> str | None:
    return previous.manifest.dense.get("kind") if previous is not None else None


def _sorted_by_ids(tokens: list[list[str]], ids: np.ndarray) -> list[list[str]]:
    """The store keeps rows sorted by id; the BM25 rows must follow the same order."""
    return [tokens[i] for i in np.argsort(ids, kind="stable")]
