"""From hits to an answer: the sentence that answers, its key span, or a plain decline.

The answer sentence is chosen among the sentences of the top articles by how much of the
question it covers (IDF-weighted tokens and character bigrams; words that only name the zone
or repeat the article's title count less, since every sentence of the article is "about" them),
whether it holds what the question type asks for (多少 → a number with its unit, 谁 → a person,
哪天 → a date, 哪里 → a place) and how well its article ranked.

Declining uses the same evidence: a question about a zone the corpus never mentions, or too
little of the question's own content found in the best article.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from qa_bot.chinese import sentence_spans, to_simplified
from qa_bot.config import AnswerSettings
from qa_bot.lexical import LexicalTokenizer
from qa_bot.records import Answer, AnswerSentence, Article, Hit
from qa_bot.zones import ZoneTable, place_of


class QuestionType(Enum):
    NUMBER = "number"
    PERSON = "person"
    DATE = "date"
    PLACE = "place"
    OTHER = "other"


def _alternatives(*words: str) -> str:
    return "|".join(words)


# Order matters: 哪一年 is a date question although 年 could read as a quantity.
_TYPE_CUES: list[tuple[QuestionType, re.Pattern]] = [
    (QuestionType.DATE, re.compile(_alternatives(
        "哪天", "哪一天", "什么时候", "何时", "哪一?年", "哪个月", "几月", "几号", "几日",
        "什么时间", "日期", "哪年", "何年", "哪个时期"))),
    (QuestionType.PERSON, re.compile(_alternatives(
        "谁", "哪位", "何人", "什么人", "哪些人", "姓名", "名字", "哪两位", "哪几位"))),
    (QuestionType.NUMBER, re.compile(_alternatives(
        "多少", "第几", "几[个家项次名份种条座台辆倍年天岁人万亿]", "多大", "多长", "多高",
        "多远", "多重", "多久", "比例", "百分之", "多快"))),
    (QuestionType.PLACE, re.compile(_alternatives(
        "哪里", "哪儿", "何处", "什么地方", "哪个(?:开发区|园区|县|市|区|省|城市|国家|地区|地方)",
        "哪些(?:开发区|园区|地方|地区|国家|城市)", "在哪", "去哪", "哪座", "哪国"))),
]

_UNITS = _alternatives(
    "万吨", "吨", "亿元", "万元", "元", "平方公里", "平方米", "m²", "公顷", "亩", "千米", "公里",
    "米", "%", "％", "个", "家", "项", "次", "名", "人", "份", "年", "天", "月", "种", "条",
    "座", "台", "辆", "倍", "期", "批", "栋", "幢", "层", "届", "位", "所", "场", "岁", "分",
    "秒", "小时", "周", "支", "本", "部", "架", "艘", "件", "户", "亿", "万")
_NUMBER_SPAN = re.compile(
    r"(?:第)?(?:\d[\d.,，]*|[一二三四五六七八九十两百千万亿零〇]+)(?:[万亿千百]+)?(?:余|多)?"
    rf"(?:{_UNITS})"
    r"|\d[\d.,]*"
)
_DATE_SPAN = re.compile(
    r"\d{4}年(?:\d{1,2}月)?(?:\d{1,2}日)?|\d{1,2}月\d{1,2}日(?:上午|下午|晚)?"
    r"|\d{1,2}月(?:份|底|初|中旬|上旬|下旬)?|(?:[一二三四五六七八九十]+|\d+)世纪(?:\d+年代)?"
)
_ROLE_WORDS = (
    "书记", "主任", "市长", "县长", "区长", "局长", "院长", "主席", "董事长", "总经理", "经理",
    "讲师", "教授", "专家", "培训师", "厅长", "部长", "处长", "科长", "委员", "总裁", "校长",
    "主持人", "记者", "队长", "负责人", "总统", "首相", "总理", "国王", "皇帝", "作者", "导演",
    "教练", "球员", "演员", "歌手", "画家", "诗人", "作家", "主编", "秘书长", "代表")
# What a person named in news does right after the name (李俊胜主持, 丁小强深入).
_PERSON_ACTIONS = tuple((
    "主持", "带队", "出席", "强调", "指出", "表示", "讲话", "担任", "出任", "当选", "参加", "深入",
    "走进", "介绍", "要求", "调研", "率队", "参观", "发表", "提出", "认为", "说"))
_HAN_NAME = re.compile(r"[\u4e00-\u9fff·]{2,4}")
# Characters after a role word looked at for the name of who holds it (县长|徐计连).
_NAME_REACH = 6
_PLACE_SPAN = re.compile(
    r"[\u4e00-\u9fff]{2,8}?(?:经济技术开发区|经济开发区|开发区|经开区|园区|省|市|县|镇|村|州|国)"
)
_NOT_WORD = re.compile(r"[^\w]")

_TYPE_PATTERNS = {
    QuestionType.NUMBER: _NUMBER_SPAN,
    QuestionType.DATE: _DATE_SPAN,
    QuestionType.PLACE: _PLACE_SPAN,
}

# How much a question word counts when it only names the zone or repeats the title.
_CONTEXT_WEIGHT = 0.3
_HAS_WORD_CHAR = re.compile(r"[0-9a-z\u3400-\u9fff]")
_QUESTION_WORDS = frozenset((
    "什么", "哪些", "哪个", "哪家", "哪位", "哪里", "哪儿", "哪天", "多少", "几个", "几家", "怎样",
    "怎么", "如何", "为什么", "是否", "有没有", "是不是", "什么样", "哪一", "哪种", "何时", "多久",
    "多大", "多长", "多高", "哪两位", "哪几位", "请问", "一下", "这个", "那个", "这次", "我们",
    "他们", "可以", "能够", "的是", "了吗",
))
# Score for a sentence holding what the question type asks for; more for the zone itself.
_SPAN_BONUS = 0.3
_ZONE_SPAN_BONUS = 0.5
# Per character of question text standing right beside the span, up to a cap.
_ANCHOR_BONUS = 0.05
_ANCHOR_CAP = 8
_ANCHOR_REACH = 12
# Confidence kept when the answer comes from another zone than the one the question names.
_OTHER_ZONE_FACTOR = 0.5
# Answer sentences are looked for in this many of the top articles.
_SENTENCES_FROM_HITS = 3


def question_type(question: str) -> QuestionType:
    text = to_simplified(question)
    for kind, cue in _TYPE_CUES:
        if cue.search(text):
            return kind
    return QuestionType.OTHER


@dataclass(frozen=True)
class Evidence:
    """Why a sentence was chosen, and how sure the choice is."""

    sentence: str
    hit: Hit
    span: tuple[int, int] | None
    sentence_coverage: float  # weighted share of the question found in the sentence
    article_coverage: float  # weighted share of the question found in the whole article
    score: float
    has_terms: bool = True  # False when the question had no content word to look for


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
        self._zone_words = {to_simplified(word) for word in zones.words()}

    def idf(self, token: str) -> float:
        """BM25's idf; a word found in no chunk weighs the most, since missing it matters most.

        BM25 stop words (要求, 今年…) are not counted in the index, so they get the weight of a
        word in a tenth of the chunks: common, yet telling one sentence from another.
        """
        stopword = self.tokenizer.is_stopword(token)
        df = self._documents / 10 if stopword else self._df.get(token, 0)
        return math.log(1 + (self._documents - df + 0.5) / (df + 0.5))

    def answer(self, question: str, hits: list[Hit], articles: dict[str, Article]) -> Answer:
        if not hits:
            return Answer(question, None, [], "索引中还没有文章")
        unknown = self.zones.unknown_mentions(question)
        if unknown:
            return Answer(question, None, hits, f"公报中没有关于{'、'.join(unknown)}的内容")
        evidence = self.best_sentence(question, hits, articles)
        confidence = self.confidence(evidence, hits[0])
        named_zones = self.zones.find(question)
        if evidence is not None and named_zones and evidence.hit.chunk.zone not in named_zones:
            # The question is about one zone and the best we found is about another.
            confidence *= _OTHER_ZONE_FACTOR
        if evidence is None or confidence < self.settings.min_confidence:
            return Answer(question, None, hits, "没有足够相关的段落")
        sentence = AnswerSentence(
            evidence.sentence, evidence.hit.chunk, evidence.span, round(confidence, 4)
        )
        return Answer(question, sentence, hits)

    # -- evidence ---------------------------------------------------------------------------
    def _weights(self, question: str, article: Article | None) -> dict[str, float]:
        """IDF weight of each question token, lowered for words that name a zone or the title:
        they tell which article, not which sentence of it."""
        context = to_simplified(f"{article.zone} {article.title}") if article else ""
        weights = {}
        for token in self._question_words(question):
            weight = self.idf(token)
            if token in self._zone_words or (context and token in context):
                weight *= _CONTEXT_WEIGHT
            weights[token] = weight
        return weights

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

    def best_sentence(
        self, question: str, hits: list[Hit], articles: dict[str, Article]
    ) -> Evidence | None:
        kind = question_type(question)
        question_bigrams = _bigrams(question)
        simplified_question = to_simplified(question)
        top_score = hits[0].score or 1.0
        best: Evidence | None = None
        for hit in hits[:_SENTENCES_FROM_HITS]:
            article = articles.get(hit.chunk.article_id)
            text = article.text if article else hit.chunk.text
            weights = self._weights(question, article)
            article_coverage = _coverage(weights, text)
            # Within the article, naming its zone again tells nothing about the sentence.
            sentence_weights = {
                token: weight for token, weight in weights.items() if token not in self._zone_words
            }
            holders = self._role_holders(
                [token for token in sentence_weights if token.endswith(_ROLE_WORDS)], text
            )
            context_bigrams = _bigrams(f"{article.zone}{article.title}") if article else set()
            key_bigrams = question_bigrams - context_bigrams or question_bigrams
            rank_prior = hit.score / top_score
            zone_names = self._zone_names(article.zone if article else hit.chunk.zone)
            for start, end in answer_windows(text, self.settings.max_sentence_chars):
                sentence = text[start:end]
                coverage = _coverage(sentence_weights, sentence, holders)
                bigram = _overlap(key_bigrams, _bigrams(sentence))
                span, span_bonus = self._span(kind, sentence, simplified_question, zone_names)
                if span:
                    span_bonus += _ANCHOR_BONUS * min(
                        _anchor_length(sentence, span, simplified_question), _ANCHOR_CAP
                    )
                score = (
                    coverage
                    + 0.5 * bigram
                    + span_bonus
                    + 0.4 * rank_prior
                    - 0.1 * min(len(sentence) / 200, 1.0)
                )
                if best is None or score > best.score:
                    best = Evidence(
                        sentence, hit, span, coverage, article_coverage, score, bool(weights)
                    )
        return best

    def confidence(self, evidence: Evidence | None, top: Hit) -> float:
        """0–1: how likely the chosen sentence answers the question."""
        if evidence is None:
            return 0.0
        dense = top.dense_score if top.dense_score is not None else 0.0
        dense_evidence = min(max((dense - 0.78) / 0.12, 0.0), 1.0)
        if not evidence.has_terms:
            return dense_evidence
        return (
            0.45 * evidence.article_coverage
            + 0.25 * evidence.sentence_coverage
            + 0.30 * dense_evidence
        )

    def _zone_names(self, zone: str) -> list[str]:
        """The zone's full name and its place name, longest first, as printed in text."""
        return [name for name in (zone, place_of(zone)) if len(name) >= 2] if zone else []

    def _span(
        self, kind: QuestionType, sentence: str, question: str, zone_names: list[str]
    ) -> tuple[tuple[int, int] | None, float]:
        """Where in the sentence the kind of thing the question asks for is, and its bonus."""
        if kind is QuestionType.PERSON:
            span = self._person_span(sentence, question)
            return span, _SPAN_BONUS if span else 0.0
        if kind is QuestionType.PLACE:
            # "哪个园区…" is mostly answered by the zone the article is about.
            for name in zone_names:
                position = to_simplified(sentence).find(to_simplified(name))
                if position >= 0 and name not in question:
                    return (position, position + len(name)), _ZONE_SPAN_BONUS
        pattern = _TYPE_PATTERNS.get(kind)
        if pattern is not None:
            for match in pattern.finditer(sentence):
                # What the question already says is not the answer (第19次 asked as 第19次会议).
                if match.group() not in question:
                    return match.span(), _SPAN_BONUS
        return None, 0.0

    def _person_span(self, sentence: str, question: str) -> tuple[int, int] | None:
        """A name: the word after a role (副市长|李哲) or before an action (李俊胜|主持)."""
        words = self.tokenizer.segment(sentence)
        offsets = [0]
        for word in words:
            offsets.append(offsets[-1] + len(word))
        for i, word in enumerate(words):
            end = _name_end(words, i)
            if end is None or word in question:
                continue
            after_role = i > 0 and words[i - 1].endswith(_ROLE_WORDS)
            before_action = end < len(words) and words[end].startswith(_PERSON_ACTIONS)
            if after_role or before_action:
                return offsets[i], offsets[end]
        return None

    def _role_holders(self, roles: list[str], text: str) -> dict[str, set[str]]:
        """Who holds each role in the article (县长 → 徐计连, from 县长徐计连出席): news names
        the role once and the person after, so 县长提出了哪些要求 is answered by 徐计连强调…"""
        holders: dict[str, set[str]] = {}
        for role in roles:
            for match in re.finditer(re.escape(role), text):
                words = self.tokenizer.segment(text[match.end() : match.end() + _NAME_REACH])
                end = _name_end(words, 0) if words else None
                if end is not None:
                    holders.setdefault(role, set()).add("".join(words[:end]))
        return holders


def _name_end(words: list[str], i: int) -> int | None:
    """Where a personal name starting at words[i] ends (exclusive), or None if it is none."""
    word = words[i]
    if not _HAN_NAME.fullmatch(word) or word.endswith(_ROLE_WORDS):
        return None
    # jieba may split an unknown given name (李俊|胜): take up one more character.
    end = i + 1
    if (end < len(words) and len(words[end]) == 1 and len(word) < 3
            and _HAN_NAME.fullmatch(word + words[end])
            and (end + 1 == len(words) or words[end + 1].startswith(_PERSON_ACTIONS))):
        end += 1
    return end


def _anchor_length(sentence: str, span: tuple[int, int], question: str) -> int:
    """How much of the question stands right next to the span (再生金属企业|13家): the
    answer to "有多少家再生金属企业" sits beside those words, not beside just 企业."""
    start, end = span
    before = to_simplified(sentence[max(0, start - _ANCHOR_REACH) : start])
    after = to_simplified(sentence[end : end + _ANCHOR_REACH])
    return _longest_common_substring(before, question) + _longest_common_substring(
        after, question
    )


def _longest_common_substring(a: str, b: str) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, start=1):
            if char == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


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
