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
from dataclasses import dataclass, replace
from pathlib import Path

from qa_bot.answer import DEFAULT_MODEL_PATH, Answerer, AnswerModel
from qa_bot.chinese import to_simplified
from qa_bot.config import Settings
from qa_bot.conversation import (
    Conversation,
    Reading,
    Turn,
    browse_target,
    implicit_followup,
    newest_first,
    read_message,
    turn_from,
    with_context,
)
from qa_bot.embedding import Embedder, SentenceTransformerEmbedder
from qa_bot.index import IndexMismatch, IndexStore, Snapshot, recorded_precision
from qa_bot.lexical import LexicalTokenizer
from qa_bot.question import QuestionType, analyse, question_type, search_text
from qa_bot.reader import SpanReader
from qa_bot.records import Answer, Article, Hit
from qa_bot.retrieval import Retriever
from qa_bot.zones import ZoneTable

log = logging.getLogger(__name__)

# A follow-up leaves the article under discussion when the article it finds alone holds this
# much more of its words (IDF-weighted share): the conversation's reading was plainly wrong.
OVERRIDE_MARGIN = 0.2
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
        reader: SpanReader | None = None,
    ) -> None:
        self.settings = settings
        self._answer_model = answer_model
        if reader is None and settings.reader.enabled:
            reader = SpanReader(settings.reader, cache_dir=settings.model_cache_path)
        self.reader = reader
        self.embedder = embedder or SentenceTransformerEmbedder(settings.model, show_progress)
        self.store = store or IndexStore(settings.index_path)
        self._loaded: Loaded | None = None
        self._reload_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._loaded is None:
            # The model before the index: a model problem is reported before any index work.
            self.embedder.warm_up()
            if self.reader is not None:
                # In the background while the index loads; the first read waits for it.
                self.reader.start_warm_up()
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
            model=self.answer_model, reader=self.reader,
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
        self,
        question: str,
        k: int | None = None,
        zone: str | None = None,
        mode: str = "hybrid",
        conversation: Conversation | None = None,
    ) -> Answer:
        """The answer to `question`; with a `conversation`, a follow-up is read with its last
        turn (qa_bot/conversation.py) and the turn is remembered for the next message."""
        question = clean_question(question)
        loaded = self.loaded
        zone_name = self.resolve_zone(zone) if zone else None
        last = conversation.last() if conversation is not None else None
        reading = read_message(question, last, loaded.zones) if last else Reading("new", question)

        if not reading.is_followup and zone_name is None:
            browsed = self._browse(question)
            if browsed is not None:
                if conversation is not None:
                    conversation.remember(self._browse_turn(question, browsed))
                return browsed

        k = k or self.settings.retrieval.top_k
        under_discussion = reading.prefer_article or (last.article_id if last else "")
        hits = loaded.retriever.search(
            search_text(reading.words),
            k=k + 1 if reading.exclude_article else k,
            zone=zone_name,
            mode=mode,
            include_article=under_discussion or None,
        )
        if (not reading.is_followup and last is not None and last.article_id and hits
                and zone_name is None and not analyse(question).wants_zone_list
                and implicit_followup(
                    question, last, loaded.zones, self._coverage, hits[0].chunk.article_id)):
            reading = Reading("implicit", with_context(question, last),
                              f"{question}（接着谈《{last.title}》）",
                              prefer_article=last.article_id, own_words=question)
        if reading.prefer_article and hits and self._found_elsewhere(reading, hits):
            reading = Reading("new", question)  # its words are plainly in another article
        swapped_zones = loaded.zones.find(reading.question) if reading.kind == "zone_swap" else []
        if reading.prefer_article:
            hits = _put_first(hits, reading.prefer_article)[:k]
            # The answer comes from the article under discussion: the others are passages.
            answer = loaded.answerer.answer(reading.question, hits[:1], loaded.snapshot.articles)
            answer = replace(answer, passages=hits)
        else:
            if reading.exclude_article:
                hits = [h for h in hits if h.chunk.article_id != reading.exclude_article]
            hits = hits[:k]
            # A swapped zone is answered from that zone's articles when retrieval found any.
            in_zone = [h for h in hits if h.chunk.zone in swapped_zones]
            answer = loaded.answerer.answer(reading.question, in_zone or hits,
                                            loaded.snapshot.articles)
            answer = replace(answer, passages=hits)
        answer = replace(answer, question=question, understood_as=reading.understood_as)
        if conversation is not None:
            conversation.remember(self._turn(reading.words, answer, last))
        return answer

    # -- conversations -----------------------------------------------------------------------
    def _coverage(self, text: str, article_id: str) -> float:
        """IDF-weighted share of the text's words found in the article (0 when unknown)."""
        article = self.loaded.snapshot.articles.get(article_id)
        answerer = self.loaded.answerer
        words = {w for w in answerer.tokenizer.tokenize(text) if len(w) >= 2}
        total = sum(answerer.idf(w) for w in words)
        if article is None or not total:
            return 0.0
        body = to_simplified(f"{article.zone}{article.title}{article.text}").lower()
        return sum(answerer.idf(w) for w in words if w in body) / total

    def _found_elsewhere(self, reading: Reading, hits: list[Hit]) -> bool:
        """True when the article found for the message alone holds the message's words far
        better than the article under discussion (他说“冬季行动”… after a wrong first answer)."""
        alone = hits[0].chunk.article_id
        if alone == reading.prefer_article:
            return False
        here = self._coverage(reading.words, reading.prefer_article)
        return self._coverage(reading.words, alone) - here >= OVERRIDE_MARGIN

    def _turn(self, question: str, answer: Answer, last: Turn | None) -> Turn:
        """What this turn was about: its zone, the answer's article, people and projects."""
        loaded = self.loaded
        article = None
        span_text = ""
        if answer.sentence is not None:
            # The article under discussion is the best passage's (what retrieval found first),
            # even when the answer sentence was taken from another.
            candidates = [answer.sentence.chunk.article_id]
            if answer.passages:  # the best passage first: it wins ties
                candidates.insert(0, answer.passages[0].chunk.article_id)
            best = max(candidates, key=lambda a: self._coverage(question, a))
            article = loaded.snapshot.articles.get(best)
            span_text = answer.sentence.span_text
        # Names carried from the last turn come whole (李俊胜, where jieba may tag only 李俊).
        carried = tuple(name for name in (last.people if last else ()) if name in question)
        people = carried + tuple(name for name in _people(question, loaded.zones)
                                 if not any(name in known for known in carried))
        # The person just named is the next 他 — unless it was the byline (谁写的): the
        # writer is not someone the article is about.
        if (span_text and answer.sentence.source == "passage"
                and question_type(question) is QuestionType.PERSON):
            people = (span_text, *people)
        return turn_from(question, article, loaded.zones, span_text, people)

    def _browse(self, message: str) -> Answer | None:
        """The articles of a zone or on a topic, newest first; None when the message is no
        such request or nothing matches (then it is answered as a question)."""
        loaded = self.loaded
        target = browse_target(message, loaded.zones)
        if target is None:
            return None
        what, value = target
        articles = list(loaded.snapshot.articles.values())
        if what == "zone":
            found = [a for a in articles if a.zone == value]
        else:
            found = [a for a in articles
                     if value in to_simplified(f"{a.title}{a.subtitle}{a.text}")]
        if not found:
            return None
        issues = loaded.snapshot.manifest.issues
        order = {name: str(info.get("ingested_at", "")) for name, info in issues.items()}
        return Answer(message, None, [], "", browse=tuple(newest_first(found, order)))

    def _browse_turn(self, message: str, browsed: Answer) -> Turn:
        zone = self.loaded.zones.canonical(message.strip("？?。！! ")) or ""
        return Turn(question=message, zone=zone, zone_mention=message if zone else "",
                    browsed=True)

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


def _put_first(hits: list[Hit], article_id: str) -> list[Hit]:
    """The article under discussion first, scored as the best hit so the answer stage ranks
    it so too; the others keep their order."""
    chosen = next((h for h in hits if h.chunk.article_id == article_id), None)
    if chosen is None:
        return hits
    top = max(h.score for h in hits)
    return [replace(chosen, score=top)] + [h for h in hits if h is not chosen]


def _people(question: str, zones) -> tuple[str, ...]:
    """Personal names in the question (jieba's part-of-speech tags), zone names excluded."""
    import jieba.posseg

    return tuple(
        pair.word for pair in jieba.posseg.cut(question)
        if pair.flag == "nr" and 2 <= len(pair.word) <= 4 and not zones.find(pair.word)
    )
