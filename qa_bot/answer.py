"""From hits to an answer: the words that answer, the sentence around them, or a decline.

1. A question about the article itself (谁写的, 哪家报纸登的, 哪一期) is answered from the top
   article's parsed fields: byline names, outlet, zone, issue, title.
2. Otherwise candidate windows (a sentence, or two neighbouring ones) of the top articles are
   scored by a linear model over features — IDF-weighted coverage of the question, character
   bigram overlap, whether the window holds what the question type asks for and how close it
   stands to the question's words, the article's rank — with weights learned from the dev data
   (`qa-bot train-answer`, stored in qa_bot/data/answer_model.json).
3. The span reader (a small extractive model, qa_bot/reader.py), when loaded, reads the best
   windows and marks the exact span; its score joins the window's. Without it, typed rules
   (qa_bot/spans.py) mark the span.
4. Confidence (a logistic model over the same evidence, the dense match included) decides
   whether to answer; a question about a zone the corpus never mentions, or an answer from
   another zone than the one asked about, is declined.
5. A question asking which zones did something (哪些开发区…) is answered with one cited item
   per article that says it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qa_bot.chinese import sentence_spans, to_simplified
from qa_bot.config import AnswerSettings
from qa_bot.lexical import LexicalTokenizer
from qa_bot.question import (
    ArticleField,
    QuestionFrame,
    QuestionType,
    analyse,
    question_type,
    search_text,
)
from qa_bot.records import Answer, AnswerSentence, Article, Hit
from qa_bot.spans import ROLE_WORDS, anchor_length, person_spans, role_holders, typed_span
from qa_bot.zones import ZoneTable, place_of

__all__ = ["AnswerModel", "Answerer", "QuestionType", "answer_windows", "question_type"]

# How much a question word counts when it only names the zone or repeats the title.
_CONTEXT_WEIGHT = 0.3
_HAS_WORD_CHAR = re.compile(r"[0-9a-z\u3400-\u9fff]")
_NOT_WORD = re.compile(r"[^\w]")
_QUESTION_WORDS = frozenset((
    "什么", "哪些", "哪个", "哪家", "哪位", "哪里", "哪儿", "哪天", "多少", "几个", "几家", "怎样",
    "怎么", "如何", "为什么", "是否", "有没有", "是不是", "什么样", "哪一", "哪种", "何时", "多久",
    "多大", "多长", "多高", "哪两位", "哪几位", "请问", "一下", "这个", "那个", "这次", "我们",
    "他们", "可以", "能够", "的是", "了吗", "为啥", "那边", "这边", "那家", "那条", "那个",
))
# Answer windows are looked for in this many of the top articles.
_SENTENCES_FROM_HITS = 3
# Anchor characters (question text beside the span) that count, at most.
_ANCHOR_CAP = 16
# A zone-list answer takes articles whose best window scores at least this share of the best.
_LIST_SHARE = 0.8
_MAX_LIST_ITEMS = 6
# How much retrieval rank counts against title overlap when finding the article asked about.
_TITLE_RANK_WEIGHT = 0.3

DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "answer_model.json"
FEATURES = ("coverage", "bigram", "typed_span", "zone_span", "anchor", "rank_prior", "length",
            "lead")
CONFIDENCE_FEATURES = ("article_coverage", "sentence_coverage", "dense", "dense_margin",
                       "window_score", "reader", "missing_rare")


@dataclass(frozen=True)
class AnswerModel:
    """Linear weights for window scoring and a logistic model for confidence.

    The defaults are the hand-set values the first version used; `qa-bot train-answer` learns
    both from dev questions and writes them to a JSON file.
    """

    window_weights: dict[str, float] = field(default_factory=lambda: {
        "coverage": 1.0, "bigram": 0.5, "typed_span": 0.3, "zone_span": 0.2, "anchor": 0.4,
        "rank_prior": 0.4, "length": -0.1, "lead": 0.0})
    reader_weight: float = 0.0
    confidence_weights: dict[str, float] = field(default_factory=lambda: {
        "article_coverage": 0.45, "sentence_coverage": 0.25, "dense": 0.30, "dense_margin": 0.0,
        "window_score": 0.0, "reader": 0.0, "missing_rare": 0.0})
    confidence_bias: float = 0.0
    logistic: bool = False  # False: the default weights are a plain weighted sum
    min_confidence: float = 0.35

    @classmethod
    def load(cls, path: Path) -> AnswerModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            window_weights=data["window_weights"],
            reader_weight=data.get("reader_weight", 0.0),
            confidence_weights=data["confidence_weights"],
            confidence_bias=data["confidence_bias"],
            logistic=True,
            min_confidence=data["min_confidence"],
        )

    def window_score(self, features: dict[str, float]) -> float:
        return sum(self.window_weights.get(name, 0.0) * value for name, value in features.items())

    def confidence(self, evidence: dict[str, float]) -> float:
        total = self.confidence_bias + sum(
            self.confidence_weights.get(name, 0.0) * value for name, value in evidence.items())
        return 1 / (1 + math.exp(-total)) if self.logistic else total


class SpanReading(Protocol):
    context: int
    start: int
    end: int
    score: float


class SpanReader(Protocol):
    def read(self, question: str, contexts: list[str], top: int = 1) -> list[SpanReading]: ...


@dataclass(frozen=True)
class Candidate:
    """One answer window of one of the top articles, with the evidence for it."""

    text: str
    hit: Hit
    hit_rank: int
    features: dict[str, float]
    span: tuple[int, int] | None  # the typed-rule span, offsets in text
    sentence_coverage: float
    article_coverage: float
    score: float
    # The rarest question word the article lacks (its idf over the largest possible): a missing
    # 碳化硅衬底 says the article is not about what is asked, however close it reads.
    missing_rare: float = 0.0


@dataclass(frozen=True)
class Evidence:
    """The chosen window and span, and the figures confidence is computed from."""

    candidate: Candidate
    span: tuple[int, int] | None
    reader_score: float
    score: float


class Answerer:
    """Chooses the answer span and sentence among the top hits, or declines."""

    def __init__(
        self,
        settings: AnswerSettings,
        tokenizer: LexicalTokenizer,
        zones: ZoneTable,
        document_frequency: Counter,
        documents: int,
        model: AnswerModel | None = None,
        reader: SpanReader | None = None,
    ) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.zones = zones
        self.model = model or AnswerModel()
        self.reader = reader
        self.min_confidence = settings.min_confidence or self.model.min_confidence
        self._df = document_frequency
        self._documents = max(documents, 1)
        self._zone_words = {to_simplified(word) for word in zones.words()}

    def idf(self, token: str) -> float:
        """BM25's idf; a word found in no chunk weighs the most, since missing it matters most.

        BM25 stop words (要求, 今年…) are not counted in the index, so they get the weight of a
        word in a tenth of the chunks: common, yet telling one sentence from another.
        """
        stopword = self.tokenizer.is_stopword(token)
        df = self._documents / 10 if stopword else self._df.get(token, 0)
        return math.log(1 + (self._documents - df + 0.5) / (df + 0.5))

    # -- the answer ---------------------------------------------------------------------------
    def answer(self, question: str, hits: list[Hit], articles: dict[str, Article]) -> Answer:
        if not hits:
            return Answer(question, None, [], "索引中还没有文章")
        unknown = self.zones.unknown_mentions(question)
        if unknown:
            return Answer(question, None, hits, f"公报中没有关于{'、'.join(unknown)}的内容")
        frame = analyse(question)
        if frame.about_article is not None:
            field_answer = self.article_field_answer(
                frame, self.described_article(frame, hits), articles)
            if field_answer is not None:
                return Answer(question, field_answer, hits)
        candidates = self.candidates(frame, hits, articles)
        evidence = self.choose(frame, candidates)
        if evidence is None:
            return Answer(question, None, hits, "没有足够相关的段落")
        confidence = self.confidence(evidence, hits)
        named_zones = self.zones.find(question)
        if named_zones and evidence.candidate.hit.chunk.zone not in named_zones:
            # The question is about one zone and the best we found is about another.
            confidence *= self.settings.other_zone_factor
        if confidence < self.min_confidence:
            return Answer(question, None, hits, "没有足够相关的段落")
        sentence = AnswerSentence(
            evidence.candidate.text, evidence.candidate.hit.chunk, evidence.span,
            round(confidence, 4),
        )
        items = self.zone_list(frame, sentence, evidence, candidates) if frame.wants_zone_list \
            else []
        return Answer(question, sentence, hits, items=items)

    # -- questions about the article itself ---------------------------------------------------
    def described_article(self, frame: QuestionFrame, hits: list[Hit]) -> Hit:
        """The hit whose title and zone the question describes (长治大抓项目那篇 → 长治大抓项目
        推进高质量发展): a question about an article names it by its headline, so among the
        top articles the one whose title shares most of its words wins, rank breaking ties."""
        asked = _bigrams(search_text(frame.text))
        top_score = hits[0].score or 1.0
        return max(_first_hit_per_article(hits), key=lambda hit: (
            _overlap(asked, _bigrams(hit.chunk.zone + hit.chunk.title))
            + _TITLE_RANK_WEIGHT * hit.score / top_score))

    def article_field_answer(
        self, frame: QuestionFrame, top: Hit, articles: dict[str, Article]
    ) -> AnswerSentence | None:
        """A line built from the top article's own field, the answering words bold; None when
        the article lacks that field (a Wikipedia passage has no byline: its text answers)."""
        article = articles.get(top.chunk.article_id)
        if article is None:
            return None
        wanted = frame.about_article
        outlet = _outlet_in(article.byline)
        if wanted is ArticleField.OUTLET and not outlet:
            wanted = ArticleField.BYLINE
        if wanted is ArticleField.BYLINE:
            if not article.byline:
                return None
            # The people's names; an organisation byline (no names) answers as printed.
            key = "、".join(article.byline_names) or article.byline
            text = f"署名：{key}（原文署名“{article.byline}”）" if key != article.byline \
                else f"署名：{key}"
            source = "byline"
        elif wanted is ArticleField.OUTLET:
            key, text, source = outlet, f"来源：{outlet}（原文署名“{article.byline}”）", "outlet"
        elif wanted is ArticleField.ZONE:
            if not article.zone:
                return None
            key, text, source = article.zone, f"这篇稿件来自{article.zone}", "zone"
        elif wanted is ArticleField.ISSUE:
            key = article.issue
            text = f"刊登于{key}" + (f"（{article.date}）" if article.date else "")
            source = "issue"
        else:
            key, text, source = article.title, f"标题：{article.title}", "title"
        start = text.index(key)
        return AnswerSentence(text, top.chunk, (start, start + len(key)), 1.0, source)

    # -- candidate windows --------------------------------------------------------------------
    def candidates(
        self, frame: QuestionFrame, hits: list[Hit], articles: dict[str, Article]
    ) -> list[Candidate]:
        question = frame.text
        question_bigrams = _bigrams(question)
        top_score = hits[0].score or 1.0
        found: list[Candidate] = []
        # Segmented once per question, weighted per article (zone and title words count less).
        words = self._question_words(question)
        for hit_rank, hit in enumerate(_first_hit_per_article(hits)):
            article = articles.get(hit.chunk.article_id)
            text = article.text if article else hit.chunk.text
            weights = self._weights(words, article)
            article_coverage = _coverage(weights, text)
            missing_rare = self._missing_rare(weights, text)
            # Within the article, naming its zone again tells nothing about the sentence.
            sentence_weights = {
                token: weight for token, weight in weights.items() if token not in self._zone_words
            }
            holders = role_holders(
                [token for token in sentence_weights if token.endswith(ROLE_WORDS)], text,
                self.tokenizer,
            )
            context_bigrams = _bigrams(f"{article.zone}{article.title}") if article else set()
            key_bigrams = question_bigrams - context_bigrams or question_bigrams
            rank_prior = hit.score / top_score
            zone_names = _zone_names(article.zone if article else hit.chunk.zone)
            simplified_zones = {to_simplified(name) for name in zone_names}
            people = person_spans(text, question, self.tokenizer) \
                if frame.kind is QuestionType.PERSON else []
            for start, end in answer_windows(text, self.settings.max_sentence_chars):
                sentence = text[start:end]
                coverage = _coverage(sentence_weights, sentence, holders)
                inside = [(a - start, b - start) for a, b in people if start <= a and b <= end]
                span = typed_span(frame.kind, sentence, question, zone_names, inside)
                anchor = anchor_length(sentence, span, question) if span else 0
                features = {
                    "coverage": coverage,
                    "bigram": _overlap(key_bigrams, _bigrams(sentence)),
                    "typed_span": 1.0 if span else 0.0,
                    # 哪个园区…: the article's own zone is the likeliest answer.
                    "zone_span": 1.0 if span and frame.kind is QuestionType.PLACE
                    and to_simplified(sentence[span[0]:span[1]]) in simplified_zones else 0.0,
                    "anchor": min(anchor, _ANCHOR_CAP) / _ANCHOR_CAP,
                    "rank_prior": rank_prior,
                    "length": min(len(sentence) / 200, 1.0),
                    "lead": 1.0 if start == 0 else 0.0,
                }
                found.append(Candidate(
                    sentence, hit, hit_rank, features, span, coverage, article_coverage,
                    self.model.window_score(features), missing_rare,
                ))
        return found

    def choose(self, frame: QuestionFrame, candidates: list[Candidate]) -> Evidence | None:
        if not candidates:
            return None
        ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
        if self.reader is None or not self.settings.reader_windows or (
                frame.kind is QuestionType.PLACE and ranked[0].span):
            best = ranked[0]
            return Evidence(best, best.span, 0.0, best.score)
        head = ranked[: self.settings.reader_windows]
        readings = {r.context: r for r in self.reader.read(frame.text, [c.text for c in head])}
        best_evidence: Evidence | None = None
        for index, candidate in enumerate(head):
            reading = readings.get(index)
            reader_score = reading.score if reading else -10.0
            score = candidate.score + self.model.reader_weight * reader_score
            # The reader's span where it finds an answer (score above its no-answer score);
            # where it does not, the typed rule's, if any (measured: better on both the
            # bulletin and CMRC than either alone).
            read_span = (reading.start, reading.end) \
                if reading and reading.end > reading.start else None
            span = read_span if read_span and (reader_score > 0 or candidate.span is None) \
                else candidate.span
            if span is not None and span is read_span:
                span = self._typed_within(frame, candidate.text, span)
            if best_evidence is None or score > best_evidence.score:
                best_evidence = Evidence(candidate, span, reader_score, score)
        return best_evidence

    def _typed_within(
        self, frame: QuestionFrame, text: str, span: tuple[int, int]
    ) -> tuple[int, int]:
        """A number or date question's span trimmed to the number or date the reader's span
        holds (13家，其中已投产4家 → 13家): the reader finds where, the type says how much."""
        if frame.kind not in (QuestionType.NUMBER, QuestionType.DATE):
            return span
        return typed_span(frame.kind, text, frame.text, [], within=span) or span

    def confidence(self, evidence: Evidence, hits: list[Hit]) -> float:
        """0–1: how likely the chosen window answers the question."""
        return self.model.confidence(self.confidence_evidence(evidence, hits))

    def confidence_evidence(self, evidence: Evidence, hits: list[Hit]) -> dict[str, float]:
        dense_scores = sorted(
            (h.dense_score for h in hits if h.dense_score is not None), reverse=True)
        dense = dense_scores[0] if dense_scores else 0.0
        margin = dense - dense_scores[1] if len(dense_scores) > 1 else 0.0
        return {
            "article_coverage": evidence.candidate.article_coverage,
            "sentence_coverage": evidence.candidate.sentence_coverage,
            "dense": min(max((dense - 0.78) / 0.12, 0.0), 1.0),
            "dense_margin": min(margin / 0.05, 1.0),
            "window_score": evidence.score,
            "reader": max(min(evidence.reader_score / 10, 1.0), -1.0),
            "missing_rare": evidence.candidate.missing_rare,
        }

    # -- list answers -------------------------------------------------------------------------
    def zone_list(
        self, frame: QuestionFrame, first: AnswerSentence, evidence: Evidence,
        candidates: list[Candidate],
    ) -> list[AnswerSentence]:
        """哪些开发区…: the best window of each other top article that says it as well as the
        best one does, each cited; the zone is the item."""
        best_by_article: dict[str, Candidate] = {}
        for candidate in candidates:
            article_id = candidate.hit.chunk.article_id
            if article_id not in best_by_article or \
                    candidate.score > best_by_article[article_id].score:
                best_by_article[article_id] = candidate
        items = [first]
        zones = {first.chunk.zone}
        for article_id, candidate in sorted(
            best_by_article.items(), key=lambda item: item[1].score, reverse=True
        ):
            chunk = candidate.hit.chunk
            if article_id == first.chunk.article_id or chunk.zone in zones or not chunk.zone:
                continue
            if candidate.score < _LIST_SHARE * evidence.candidate.score:
                continue
            zones.add(chunk.zone)
            items.append(AnswerSentence(candidate.text, chunk, None, round(candidate.score, 4)))
            if len(items) == _MAX_LIST_ITEMS:
                break
        return items if len(items) > 1 else []

    # -- evidence helpers ---------------------------------------------------------------------
    def _weights(self, words: set[str], article: Article | None) -> dict[str, float]:
        """IDF weight of each question word, lowered for words that name a zone or the title:
        they tell which article, not which sentence of it."""
        context = to_simplified(f"{article.zone} {article.title}") if article else ""
        weights = {}
        for token in words:
            weight = self.idf(token)
            if token in self._zone_words or (context and token in context):
                weight *= _CONTEXT_WEIGHT
            weights[token] = weight
        return weights

    def _missing_rare(self, weights: dict[str, float], text: str) -> float:
        simplified = to_simplified(text).lower()
        missing = [w for token, w in weights.items() if token not in simplified]
        return max(missing, default=0.0) / self.idf("\x00")

    def _question_words(self, question: str) -> set[str]:
        """Content words of the question, each once (precise mode: 负责人, not 负责/责人 too).

        Words jieba only guessed (HMM) count when the corpus has them: a guessed "word" such
        as 县到 missing from the text says nothing, a guessed name does. Single characters and
        question words say nothing either. BM25's stop-word list is not used here: it drops
        words like 要求, 完成 and 今年 that tell one sentence from another.
        """
        simplified = to_simplified(question).lower()
        words = set(self.tokenizer.segment(simplified, hmm=False)) | {
            word for word in self.tokenizer.segment(simplified) if word in self._df
        }
        return {w for w in words if len(w) >= 2 and _HAS_WORD_CHAR.search(w)} - _QUESTION_WORDS


def _first_hit_per_article(hits: list[Hit]) -> list[Hit]:
    """The best hit of each of the top `_SENTENCES_FROM_HITS` articles, in rank order."""
    firsts: dict[str, Hit] = {}
    for hit in hits:
        firsts.setdefault(hit.chunk.article_id, hit)
        if len(firsts) == _SENTENCES_FROM_HITS:
            break
    return list(firsts.values())


def _zone_names(zone: str) -> list[str]:
    """The zone's full name and its place name, longest first, as printed in text."""
    return [name for name in (zone, place_of(zone)) if len(name) >= 2] if zone else []


def _outlet_in(byline: str) -> str:
    """The outlet a byline credits (文章来源：晋中日报 → 晋中日报), or ""."""
    match = re.search(r"(?:文章来源|来源|稿源|转载自|原载)[：:]\s*([^）)\s]+)", byline or "")
    return match.group(1) if match else ""


def answer_units(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Whole sentences; one longer than max_chars is split into its ；-clauses."""
    units = []
    for start, end in sentence_spans(text, split_clauses=False):
        if end - start <= max_chars:
            units.append((start, end))
        else:
            units.extend((start + a, start + b) for a, b in sentence_spans(text[start:end]))
    return units


def answer_windows(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Each unit alone, and with the unit before it in the same paragraph when both fit:
    news often names the subject in one sentence and says what it did in the next."""
    units = answer_units(text, max_chars)
    windows = list(units)
    for (start, _), (_, end) in itertools.pairwise(units):
        if end - start <= max_chars and "\n" not in text[start:end]:
            windows.append((start, end))
    return windows


def _coverage(
    weights: dict[str, float], text: str, aliases: dict[str, set[str]] | None = None
) -> float:
    """Weighted share of the tokens found in the text; a token also counts when one of its
    aliases (the person holding a role the question names) is there."""
    total = sum(weights.values())
    if not total:
        return 0.0
    simplified = to_simplified(text).lower()
    aliases = aliases or {}
    return sum(
        w for token, w in weights.items()
        if token in simplified or any(alias in simplified for alias in aliases.get(token, ()))
    ) / total


def _bigrams(text: str) -> set[str]:
    clean = _NOT_WORD.sub("", to_simplified(text))
    return {clean[i : i + 2] for i in range(len(clean) - 1)}


def _overlap(question: set[str], sentence: set[str]) -> float:
    return len(question & sentence) / len(question) if question else 0.0

