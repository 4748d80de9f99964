"""The one answer path that every shell (CLI, REPL, Telegram) calls: `QAService.answer()`.

Construction only records settings; `warm_up()` loads the model and the live index snapshot.
`reload_if_changed()` swaps in a newer snapshot written by an ingest, so a long-running bot
picks up new issues without a restart; a reader keeps answering from the old snapshot until
the new one is fully loaded, and never sees a half-written index.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from qa_bot.answer import DEFAULT_MODEL_PATH, Answerer, AnswerModel
from qa_bot.config import Settings
from qa_bot.embedding import Embedder, SentenceTransformerEmbedder
from qa_bot.index import IndexMismatch, IndexStore, Snapshot, recorded_precision
from qa_bot.lexical import LexicalTokenizer
from qa_bot.question import search_text
from qa_bot.records import Answer, Article
from qa_bot.retrieval import Retriever
from qa_bot.zones import ZoneTable

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 500  # beyond the model window anyway; keeps a pasted article from stalling
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


class QuestionError(ValueError):
    """The question cannot be answered as asked (empty, only symbols...)."""


class UnknownZone(ValueError):
    pass


def clean_question(question: str) -> str:
    text = _CONTROL.sub(" ", question or "")
    text = " ".join(text.split())
    if not re.search(r"\w", text):
        what = "has no words, only symbols" if text else "is empty"
        raise QuestionError(
            f"the question {what}: type a question in words, e.g. 侯马开发区召开了什么会？"
        )
    return text[:MAX_QUESTION_CHARS]


@dataclass(frozen=True)
class Loaded:
    """Everything derived from one snapshot, swapped as a unit."""

    snapshot: Snapshot
    zones: ZoneTable
    retriever: Retriever
    answerer: Answerer


class QAService:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        store: IndexStore | None = None,
        show_progress: bool = True,
        answer_model: AnswerModel | None = None,
    ) -> None:
        self.settings = settings
        self._answer_model = answer_model
        self.embedder = embedder or SentenceTransformerEmbedder(settings.model, show_progress)
        self.store = store or IndexStore(settings.index_path)
        self._loaded: Loaded | None = None
        self._reload_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._loaded is None:
            # The model before the index: a model problem is reported before any index work.
            self.embedder.warm_up()
            self._loaded = self._load(self.store.load())

    @property
    def loaded(self) -> Loaded:
        if self._loaded is None:
            self.warm_up()
        return self._loaded

    @property
    def snapshot(self) -> Snapshot:
        return self.loaded.snapshot

    def reload_if_changed(self) -> bool:
        """Load the live snapshot if an ingest replaced it; True when a new one was swapped in."""
        with self._reload_lock:
            current = self.store.current_name()
            if self._loaded is not None and current == self._loaded.snapshot.name:
                return False
            self._loaded = self._load(self.store.load())
            log.info("now serving index snapshot %s", self._loaded.snapshot.name)
            return True

    def _load(self, snapshot: Snapshot) -> Loaded:
        self._check_model(snapshot)
        lexical = snapshot.manifest.lexical
        tokenizer = LexicalTokenizer(lexical.get("user_words", []))
        tokenizer.warm_up()
        articles = snapshot.articles.values()
        zones = ZoneTable.build(
            (a.zone for a in articles),
            texts=(a.title + "\n" + a.text for a in articles),
            alias_file=Path(self.settings.zone_aliases),
        )
        # Rows per token, read off the BM25 columns (a pass over every token list cost ~0.1 s
        # per 10k chunks at start-up); the sentinel of empty rows is no word.
        document_frequency = Counter(snapshot.lexical.document_frequencies())
        document_frequency.pop("\x00", None)
        retriever = Retriever(self.settings.retrieval, self.embedder, snapshot, tokenizer, zones)
        answerer = Answerer(
            self.settings.answer, tokenizer, zones, document_frequency, len(snapshot),
            model=self.answer_model,
        )
        return Loaded(snapshot, zones, retriever, answerer)

    @property
    def answer_model(self) -> AnswerModel:
        """The learned window weights and confidence (qa_bot/data/answer_model.json, or the
        `[answer] model_path` file); the hand-set defaults when there is none."""
        if self._answer_model is None:
            path = Path(self.settings.answer.model_path or DEFAULT_MODEL_PATH).expanduser()
            self._answer_model = AnswerModel.load(path) if path.is_file() else AnswerModel()
        return self._answer_model

    def _check_model(self, snapshot: Snapshot) -> None:
        recorded = snapshot.manifest.model
        model = self.settings.model
        problems = []
        if recorded.get("name") != model.name:
            problems.append(f"model {recorded.get('name')!r} (config: {model.name!r})")
        if (recorded.get("query_prompt"), recorded.get("passage_prompt")) != (
            model.query_prompt, model.passage_prompt
        ):
            problems.append("different query/passage prompts")
        if recorded_precision(recorded) != model.precision:
            problems.append(
                f"precision {recorded_precision(recorded)} (config: {model.precision})"
            )
        if not problems:
            self.embedder.warm_up()
            if recorded.get("fingerprint") != self.embedder.fingerprint():
                problems.append(f"other weights (fingerprint {recorded.get('fingerprint')})")
            elif recorded.get("dimension") != self.embedder.dimension:
                problems.append(f"dimension {recorded.get('dimension')}")
        if problems:
            raise IndexMismatch(
                f"the index in {self.store.directory} was built with {', '.join(problems)}; "
                "questions would be embedded differently from the passages. Run `qa-bot rebuild` "
                "to re-embed it with the configured model, or restore the old model settings."
            )

    # -- answering ---------------------------------------------------------------------------
    def answer(
        self, question: str, k: int | None = None, zone: str | None = None, mode: str = "hybrid"
    ) -> Answer:
        question = clean_question(question)
        loaded = self.loaded
        zone_name = self.resolve_zone(zone) if zone else None
        hits = loaded.retriever.search(search_text(question), k=k, zone=zone_name, mode=mode)
        return loaded.answerer.answer(question, hits, loaded.snapshot.articles)

    def resolve_zone(self, zone: str) -> str:
        canonical = self.loaded.zones.canonical(zone)
        if canonical is None:
            known = "、".join(name for name, _ in self.zone_counts())
            raise UnknownZone(f"unknown zone {zone!r}; zones in the corpus: {known}")
        return canonical

    # -- browsing ----------------------------------------------------------------------------
    def article(self, article_id: str) -> Article | None:
        return self.snapshot.articles.get(article_id)

    def zone_counts(self) -> list[tuple[str, int]]:
        counts = Counter(a.zone for a in self.snapshot.articles.values() if a.zone)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def latest_issue(self) -> tuple[str, list[Article]]:
        """The most recently ingested issue and its articles in print order."""
        issues = self.snapshot.manifest.issues
        if not issues:
            return "", []
        latest = max(issues, key=lambda name: (issues[name].get("ingested_at", ""), name))
        articles = [a for a in self.snapshot.articles.values() if a.issue == latest]
        return latest, sorted(articles, key=lambda a: a.line)
