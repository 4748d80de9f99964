"""From hits to an answer: the sentence that answers, its key span, or a plain decline.

The answer sentence is chosen among the sentences of the top articles by how much of the
question it covers (IDF-weighted tokens and character bigrams), whether it holds what the
question type asks for (多少 → a number with its unit, 谁 → a person, 哪天 → a date,
哪里 → a place), and how well its article ranked. Declining is decided on the same evidence:
a question about a zone the corpus never mentions, or too little of the question found.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from qa_bot.chinese import sentence_spans, to_simplified
from qa_bot.config import AnswerSettings
from qa_bot.lexical import LexicalTokenizer
from qa_bot.records import Answer, AnswerSentence, Article, Chunk, Hit
from qa_bot.zones import ZoneTable


class QuestionType(Enum):
    NUMBER = "number"
    PERSON = "person"
    DATE = "date"
    PLACE = "place"
    OTHER = "other"


_TYPE_CUES: list[tuple[QuestionType, re.Pattern]] = [
    (QuestionType.DATE, re.compile(r"哪天|哪一天|什么时候|何时|哪一?年|哪个月|几月|几号|几日|什么时间|日期|哪年")),
    (QuestionType.NUMBER, re.compile(r"多少|几|多大|多长|多高|多远|多重|多久|比例|百分之|数量|规模|面积|产能|金额")),
    (QuestionType.PERSON, re.compile(r"谁|哪位|何人|什么人|哪些人|姓名|名字")),
    (QuestionType.PLACE, re.compile(r"哪里|哪儿|何处|什么地方|哪个(?:开发区|园区|县|市|区|省|城市|国家|地方)|哪些(?:开发区|园区|地方)|在哪|去哪|赴")),
]

_NUMBER_SPAN = re.compile(
    r"(?:第)?[0-9０-９][0-9０-９.,，]*(?:[万亿千百]+)?(?:余|多)?"
    r"(?:个|家|项|次|名|亩|万吨|吨|亿元|万元|元|平方米|平方公里|m²|m2|%|％|人|份|年|天|月|种|条|座|台|辆|公里|千米|米|倍|期|批|栋|幢|层|届|位|所|场|吨/年)?"
    r"|[一二三四五六七八九十两百千万]+(?:余|多)?(?:个|家|项|次|名|亩|吨|人|份|种|条|位|批|届)"
)
_DATE_SPAN = re.compile(
    r"\d{4}年(?:\d{1,2}月)?(?:\d{1,2}日)?|\d{1,2}月\d{1,2}日(?:上午|下午)?|\d{1,2}月(?:份|底|初|中旬)?|"
    r"(?:今年|去年|近日|近年来|日前)"
)
_PERSON_SPAN = re.compile(
    r"(?:书记|主任|市长|县长|区长|局长|院长|主席|董事长|总经理|经理|讲师|教授|专家|培训师|"
    r"厅长|部长|处长|科长|委员)[\u4e00-\u9fff]{2,3}|[\u4e00-\u9fff]{2,3}(?=主持|带队|出席|强调|要求|表示|指出)"
)
_PLACE_SPAN = re.compile(r"[\u4e00-\u9fff]{2,8}?(?:经济技术开发区|经济开发区|开发区|经开区|园区|省|市|县|区|镇|村)")
_BIGRAM_CLEAN = re.compile(r"[^\w]")

_TYPE_PATTERNS = {
    QuestionType.NUMBER: _NUMBER_SPAN,
    QuestionType.DATE: _DATE_SPAN,
    QuestionType.PERSON: _PERSON_SPAN,
    QuestionType.PLACE: _PLACE_SPAN,
}


def question_type(question: str) -> QuestionType:
    text = to_simplified(question)
    for kind, cue in _TYPE_CUES:
        if cue.search(text):
            return kind
    return QuestionType.OTHER


@dataclass(frozen=True)
class ScoredSentence:
    text: str
    chunk: Chunk
    coverage: float  # share of the question's weighted tokens found in the sentence
    span: tuple[int, int] | None
    score: float


class Answerer:
    """Chooses the answer sentence among the top hits, or declines."""

    def __init__(
        self,
        settings: AnswerSettings,
        tokenizer: LexicalTokenizer,
        zones: ZoneTable,
        document_frequency: Counter,
        documents: int,
    ) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.zones = zones
        self._df = document_frequency
        self._documents = max(documents, 1)

    def idf(self, token: str) -> float:
        return math.log(1 + (self._documents - self._df.get(token, 0) + 0.5)
                        / (self._df.get(token, 0) + 0.5))

    def answer(
        self, question: str, hits: list[Hit], articles: dict[str, Article]
    ) -> Answer:
        if not hits:
            return Answer(question, None, [], "索引中还没有文章")
        unknown = self.zones.unknown_mentions(question)
        if unknown:
            return Answer(
                question, None, hits,
                f"公报中没有关于{'、'.join(unknown)}的内容",
            )
        kind = question_type(question)
        weights = self._question_weights(question)
        best = self._best_sentence(question, kind, weights, hits[:3], articles)
        confidence = self._confidence(best, hits[0], weights)
        if best is None or confidence < self.settings.min_confidence:
            return Answer(question, None, hits, "没有足够相关的段落")
        sentence = AnswerSentence(best.text, best.chunk, best.span, round(confidence, 4))
        return Answer(question, sentence, hits)

    # -- evidence ---------------------------------------------------------------------------
    def _question_weights(self, question: str) -> dict[str, float]:
        tokens = set(self.tokenizer.tokenize(question))
        return {token: self.idf(token) for token in tokens}

    def _coverage(self, weights: dict[str, float], text: str) -> float:
        if not weights:
            return 0.0
        simplified = to_simplified(text).lower()
        total = sum(weights.values())
        found = sum(w for token, w in weights.items() if token in simplified)
        return found / total

    def _best_sentence(
        self,
        question: str,
        kind: QuestionType,
        weights: dict[str, float],
        hits: list[Hit],
        articles: dict[str, Article],
    ) -> ScoredSentence | None:
        question_bigrams = _bigrams(question)
        best: ScoredSentence | None = None
        top_score = hits[0].score or 1.0
        for hit in hits:
            article = articles.get(hit.chunk.article_id)
            text = article.text if article else hit.chunk.text
            chunk_span = (hit.chunk.start, hit.chunk.end) if article else (0, len(text))
            rank_prior = hit.score / top_score
            for start, end in sentence_spans(text):
                sentence = text[start:end]
                if len(sentence) > self.settings.max_sentence_chars * 2:
                    sentence = sentence[: self.settings.max_sentence_chars * 2]
                coverage = self._coverage(weights, sentence)
                bigram = _overlap(question_bigrams, _bigrams(sentence))
                span = self._span(kind, sentence, question)
                in_chunk = chunk_span[0] <= start < chunk_span[1]
                score = (
                    1.0 * coverage
                    + 0.5 * bigram
                    + (0.25 if span else 0.0)
                    + 0.3 * rank_prior
                    + (0.05 if in_chunk else 0.0)
                )
                if best is None or score > best.score:
                    best = ScoredSentence(sentence, hit.chunk, coverage, span, score)
        return best

    def _span(self, kind: QuestionType, sentence: str, question: str) -> tuple[int, int] | None:
        pattern = _TYPE_PATTERNS.get(kind)
        if pattern is None:
            return None
        simplified_question = to_simplified(question)
        for match in pattern.finditer(sentence):
            value = match.group()
            # A span the question already contains is not the answer (第19次 asked about 第几次).
            if value and value not in simplified_question and len(value.strip()) >= 1:
                if kind is QuestionType.NUMBER and not re.search(r"[0-9０-９一二三四五六七八九十两百千万]", value):
                    continue
                return match.span()
        return None

    def _confidence(
        self, best: ScoredSentence | None, top: Hit, weights: dict[str, float]
    ) -> float:
        if best is None:
            return 0.0
        dense = top.dense_score if top.dense_score is not None else 0.0
        dense_evidence = min(max((dense - 0.78) / 0.12, 0.0), 1.0)
        return 0.6 * best.coverage + 0.4 * dense_evidence


def _bigrams(text: str) -> set[str]:
    clean = _BIGRAM_CLEAN.sub("", to_simplified(text))
    return {clean[i : i + 2] for i in range(len(clean) - 1)}


def _overlap(question: set[str], sentence: set[str]) -> float:
    return len(question & sentence) / len(question) if question else 0.0
