"""Typed spans inside a sentence: the number, date, place or person a question asks for.

Rules by question type, used where no trained reader is loaded and as the reader's fallback.
Among several candidates the one standing beside the question's own words wins (再生金属企业
|13家), not the first one in sight: a sentence about 17个项目 in 2月 answers 多少亿元 with the
amount next to 总投资, not with 2月.
"""

from __future__ import annotations

import re
from functools import lru_cache

from qa_bot.chinese import to_simplified
from qa_bot.lexical import LexicalTokenizer
from qa_bot.question import QuestionType


def _alternatives(*words: str) -> str:
    return "|".join(words)


_UNITS = _alternatives(
    "万吨", "吨", "亿元", "万元", "元", "平方公里", "平方米", "m²", "公顷", "亩", "千米", "公里",
    "米", "%", "％", "个", "家", "项", "次", "名", "人", "份", "年", "天", "月", "种", "条",
    "座", "台", "辆", "倍", "期", "批", "栋", "幢", "层", "届", "位", "所", "场", "岁", "分",
    "秒", "小时", "周", "支", "本", "部", "架", "艘", "件", "户", "亿", "万", "套", "吨/年",
    "千瓦", "兆瓦", "GW", "MW", "万美元", "美元")
NUMBER_SPAN = re.compile(
    r"(?:第)?(?:近|约|超|逾)?(?:\d[\d.,，]*|[一二三四五六七八九十两百千万亿零〇]+)(?:[万亿千百]+)?"
    rf"(?:余|多)?(?:{_UNITS})"
    r"|\d[\d.,]*"
)
DATE_SPAN = re.compile(
    r"\d{4}年(?:\d{1,2}月)?(?:\d{1,2}日)?|\d{1,2}月\d{1,2}日(?:上午|下午|晚)?"
    r"|\d{1,2}月(?:份|底|初|中旬|上旬|下旬)?|(?:[一二三四五六七八九十]+|\d+)世纪(?:\d+年代)?"
)
PLACE_SPAN = re.compile(
    r"[\u4e00-\u9fff]{2,8}?(?:经济技术开发区|经济开发区|开发区|经开区|高新区|园区|省|市|县|镇|村|州|国)"
)
# A company name: no function word inside (管委会与|包头市…有限公司 starts after 与).
ORGANISATION_SPAN = re.compile(
    r"(?:(?![与和同跟向由及在为对将被把的是])[\u4e00-\u9fffA-Za-z0-9（）()·]){2,30}?"
    r"(?:股份有限公司|有限责任公司|有限公司|集团公司|集团|公司|研究院)"
)
# What follows a purpose or cause marker is the reason (为了…, 旨在…, 以…为目标).
REASON_SPAN = re.compile(
    r"(?:为了|旨在|目的是|目标是|以便|以期|力争|争取|确保|推动|助推|由于|因为)"
    r"([^，。；！？]{2,40})"
)
ROLE_WORDS = (
    "书记", "主任", "市长", "县长", "区长", "局长", "院长", "主席", "董事长", "总经理", "经理",
    "讲师", "教授", "专家", "培训师", "厅长", "部长", "处长", "科长", "委员", "总裁", "校长",
    "主持人", "记者", "队长", "负责人", "总统", "首相", "总理", "国王", "皇帝", "作者", "导演",
    "教练", "球员", "演员", "歌手", "画家", "诗人", "作家", "主编", "秘书长", "代表", "组长",
    "团长", "省长", "镇长", "所长", "行长", "顾问")
# What a person named in news does right after the name (李俊胜主持, 丁小强深入).
PERSON_ACTIONS = tuple((
    "主持", "带队", "出席", "强调", "指出", "表示", "讲话", "担任", "出任", "当选", "参加", "深入",
    "走进", "介绍", "要求", "调研", "率队", "参观", "发表", "提出", "认为", "说", "一行"))
_HAN_NAME = re.compile(r"[\u4e00-\u9fff·]{2,4}")
# Characters after a role word looked at for the name of who holds it (县长|徐计连).
NAME_REACH = 6
# Characters each side of a span looked at for the question's own words.
ANCHOR_REACH = 12
NEAR_REACH = 5


def typed_span(
    kind: QuestionType,
    sentence: str,
    question: str,
    zone_names: list[str],
    people: list[tuple[int, int]] = (),
) -> tuple[int, int] | None:
    """Where in the sentence the kind of thing the question asks for is, or None.

    `people`: the names in the sentence (`person_spans` of its article, shifted), for 谁.
    """
    if kind is QuestionType.PERSON:
        if not people:
            return None
        return max(people, key=lambda span: (anchor_length(sentence, span, question), -span[0]))
    if kind is QuestionType.PLACE:
        # "哪个园区…" is mostly answered by the zone the article is about.
        simplified = to_simplified(sentence)
        for name in zone_names:
            position = simplified.find(to_simplified(name))
            if position >= 0 and name not in question:
                return position, position + len(name)
    if kind is QuestionType.REASON:
        match = REASON_SPAN.search(sentence)
        return match.span(1) if match else None
    pattern = {
        QuestionType.NUMBER: NUMBER_SPAN, QuestionType.DATE: DATE_SPAN,
        QuestionType.PLACE: PLACE_SPAN, QuestionType.ORGANISATION: ORGANISATION_SPAN,
    }.get(kind)
    if pattern is None:
        return None
    # Matched on Simplified text (億元 is 亿元); OpenCC keeps CJK text the same length, so the
    # offsets hold in the sentence as printed.
    simplified = to_simplified(sentence)
    text = simplified if len(simplified) == len(sentence) else sentence
    # What the question already says is not the answer (第19次 asked as 第19次会议).
    spans = [m.span() for m in pattern.finditer(text) if m.group() not in question]
    if not spans:
        return None
    if kind is QuestionType.DATE:
        # A day beats a month beats a year: 6月12日 answers 哪天, not the 2023年 of the meeting.
        return max(spans, key=lambda span: (_date_precision(sentence[span[0]:span[1]]),
                                            -span[0]))
    unit = asked_unit(question) if kind is QuestionType.NUMBER else ""
    return max(spans, key=lambda span: (
        bool(unit) and sentence[span[0]:span[1]].endswith(unit),
        anchor_length(sentence, span, question), -span[0]))


_ASKED_UNIT = re.compile(rf"(?:多少|几)({_UNITS})")
_ASKS_SHARE = re.compile(r"比例|比重|占比|百分之|百分比|增长率|增速|率是")


def asked_unit(question: str) -> str:
    """The unit a number question names (多少亿元 → 亿元, 比例 → %), or ""."""
    if _ASKS_SHARE.search(question):
        return "%"
    match = _ASKED_UNIT.search(question)
    return match.group(1) if match else ""


def _date_precision(date: str) -> int:
    return 2 if "日" in date else 1 if "月" in date else 0


def person_spans(text: str, question: str, tokenizer: LexicalTokenizer) -> list[tuple[int, int]]:
    """Names in a text: the word after a role (副市长|李哲) or before an action (李俊胜|主持),
    other than names the question already says. The article is segmented once; each answer
    window takes the names inside it."""
    words = tokenizer.segment(text)
    offsets = [0]
    for word in words:
        offsets.append(offsets[-1] + len(word))
    found = []
    for i, word in enumerate(words):
        end = name_end(words, i)
        if end is None or word in question:
            continue
        after_role = i > 0 and words[i - 1].endswith(ROLE_WORDS)
        before_action = end < len(words) and words[end].startswith(PERSON_ACTIONS)
        if after_role or before_action:
            found.append((offsets[i], offsets[end]))
    return found


def role_holders(roles: list[str], text: str, tokenizer: LexicalTokenizer) -> dict[str, set[str]]:
    """Who holds each role in the article (县长 → 徐计连, from 县长徐计连出席): news names
    the role once and the person after, so 县长提出了哪些要求 is answered by 徐计连强调…"""
    holders: dict[str, set[str]] = {}
    for role in roles:
        for match in re.finditer(re.escape(role), text):
            words = tokenizer.segment(text[match.end() : match.end() + NAME_REACH])
            end = name_end(words, 0) if words else None
            if end is not None:
                holders.setdefault(role, set()).add("".join(words[:end]))
    return holders


def name_end(words: list[str], i: int) -> int | None:
    """Where a personal name starting at words[i] ends (exclusive), or None if it is none."""
    word = words[i]
    if not _HAN_NAME.fullmatch(word) or word.endswith(ROLE_WORDS):
        return None
    # jieba may split an unknown given name (李俊|胜): take up one more character.
    end = i + 1
    if (end < len(words) and len(words[end]) == 1 and len(word) < 3
            and _HAN_NAME.fullmatch(word + words[end])
            and (end + 1 == len(words) or words[end + 1].startswith(PERSON_ACTIONS))):
        end += 1
    return end


def anchor_length(sentence: str, span: tuple[int, int], question: str) -> int:
    """How much of the question stands right next to the span (再生金属企业|13家): the
    answer to "有多少家再生金属企业" sits beside those words, not beside just 企业."""
    start, end = span
    near = to_simplified(sentence[max(0, start - NEAR_REACH) : start])
    before = to_simplified(sentence[max(0, start - ANCHOR_REACH) : start])
    after = to_simplified(sentence[end : end + ANCHOR_REACH])
    # The words right before a number name what it counts (总投资|572亿元): they count twice.
    return (longest_common_substring(near, question) + longest_common_substring(before, question)
            + longest_common_substring(after, question))


def longest_common_substring(a: str, b: str) -> int:
    """Length of the longest string found in both (a is short: a span's neighbourhood)."""
    pieces = _substrings(b)
    best = 0
    for start in range(len(a)):
        # Only longer matches than the best so far are worth looking for.
        for end in range(start + best + 1, len(a) + 1):
            if a[start:end] not in pieces:
                break
            best = end - start
    return best


@lru_cache(maxsize=64)
def _substrings(text: str) -> frozenset[str]:
    """Every substring of a question, once per question (questions are short)."""
    return frozenset(
        text[i:j] for i in range(len(text)) for j in range(i + 1, min(len(text), i + 40) + 1))
