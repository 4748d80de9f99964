"""What a question asks for: the kind of span (a number, a person, a date…), whether it asks
about the article itself (who wrote it, which zone, which issue) and whether it wants a list.

Pure rules over the question text (Simplified); the answer stage uses the frame to pick a span
type, to answer from an article's own fields, or to gather one item per article.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from qa_bot.chinese import to_simplified


class QuestionType(Enum):
    NUMBER = "number"
    PERSON = "person"
    DATE = "date"
    PLACE = "place"
    REASON = "reason"  # 为什么 / 为了什么 / 目的
    ORGANISATION = "organisation"  # 哪家公司 / 什么企业
    OTHER = "other"


class ArticleField(Enum):
    """A question about the article itself, answered by its parsed fields."""

    BYLINE = "byline"  # 谁写的 / 署名 / 哪位记者
    OUTLET = "outlet"  # 哪家报纸登的 / 来源
    ZONE = "zone"  # 这是哪个开发区的稿子
    ISSUE = "issue"  # 哪一期登的
    TITLE = "title"  # 标题是什么


def _alternatives(*words: str) -> str:
    return "|".join(words)


# Order matters: 哪一年 is a date question although 年 could read as a quantity.
_TYPE_CUES: list[tuple[QuestionType, re.Pattern]] = [
    (QuestionType.DATE, re.compile(_alternatives(
        "哪天", "哪一天", "什么时候", "何时", "哪一?年", "哪个月", "几月", "几号", "几日",
        "什么时间", "日期", "哪年", "何年", "哪个时期"))),
    (QuestionType.PERSON, re.compile(_alternatives(
        "谁", "哪位", "何人", "什么人", "哪些人", "姓名", "名字叫", "哪两位", "哪几位"))),
    (QuestionType.NUMBER, re.compile(_alternatives(
        "多少", "第几", "几[个家项次名份种条座台辆倍年天岁人万亿位大]", "多大", "多长", "多高",
        "多远", "多重", "多久", "比例", "百分之", "多快", "排老几", "排第几", "占比"))),
    (QuestionType.PLACE, re.compile(_alternatives(
        "哪里", "哪儿", "何处", "什么地方", "哪个(?:开发区|园区|县|市|区|省|城市|国家|地区|地方)",
        "哪些(?:开发区|园区|地方|地区|国家|城市)", "在哪", "去哪", "哪座", "哪国", "哪条路"))),
    (QuestionType.ORGANISATION, re.compile(_alternatives(
        "哪家(?:公司|企业|单位|集团|机构|银行)", "哪个(?:公司|企业|单位|集团|机构)",
        "什么(?:公司|企业|集团)", "哪些(?:公司|企业|单位)"))),
    (QuestionType.REASON, re.compile(_alternatives(
        "为什么", "为啥", "为何", "什么目的", "目的是", "为了什么", "出于什么", "什么原因",
        "原因是", "想达到什么", "目标是什么", "什么目标", "图什么"))),
]

# Words that point at the article itself (那条消息, 这篇稿子): without one, 作者 is a book's author.
_ARTICLE_REF = r"(?:稿子?|篇|文章|消息|报道|新闻|这条|那条|这则|那则)"
_WHO = r"(?:谁|哪位|哪几位|哪两位|哪三位|哪些人|什么人)"
# Who wrote / reported / filed the piece. "记者" alone is not enough: 海外华人记者在晋城看到…
_BYLINE_CUE = re.compile(_alternatives(
    r"署名", r"采写", r"供的?稿", r"执笔", r"撰稿",
    rf"{_ARTICLE_REF}.{{0,6}}{_WHO}(?:记者|通讯员)?(?:来)?(?:写|撰写|报道|发|拍)",
    rf"{_ARTICLE_REF}.{{0,6}}(?:作者|记者|通讯员|摄影)(?:是|有|叫)",
    rf"{_WHO}(?:写|撰写|报道|拍)的{_ARTICLE_REF}",
))
_OUTLET_CUE = re.compile(_alternatives(
    r"哪家(?:报纸|报社|媒体|网站|报)(?:最早)?(?:登|刊|发|转载)",
    r"最早.{0,4}(?:登|刊|发)",
    rf"{_ARTICLE_REF}.{{0,6}}(?:来源|出处)",
))
_ZONE_CUE = re.compile(_alternatives(
    rf"哪个(?:开发区|园区|地方|单位)的{_ARTICLE_REF}",
    rf"{_ARTICLE_REF}是哪个(?:开发区|园区|地方|单位)",
))
_ISSUE_CUE = re.compile(r"哪一?期|第几期")
_TITLE_CUE = re.compile(rf"{_ARTICLE_REF}.{{0,6}}(?:标题|题目)")

# Asks for several things, possibly across articles: 哪些开发区 / 哪几个园区 / 还有哪些.
_LIST_CUE = re.compile(r"哪些|哪几|哪两|哪三|都有(?:谁|什么|哪)|分别")
_ZONE_LIST_CUE = re.compile(r"(?:哪些|哪几个|哪两个|哪三个)(?:开发区|园区|经开区|高新区)")


@dataclass(frozen=True)
class QuestionFrame:
    text: str  # the question in Simplified characters
    kind: QuestionType
    about_article: ArticleField | None = None
    wants_list: bool = False
    wants_zone_list: bool = False  # which zones did X: one item per article


def question_type(question: str) -> QuestionType:
    text = to_simplified(question)
    for kind, cue in _TYPE_CUES:
        if cue.search(text):
            return kind
    return QuestionType.OTHER


def article_field(question: str) -> ArticleField | None:
    text = to_simplified(question)
    for field, cue in (
        (ArticleField.OUTLET, _OUTLET_CUE),
        (ArticleField.BYLINE, _BYLINE_CUE),
        (ArticleField.ISSUE, _ISSUE_CUE),
        (ArticleField.ZONE, _ZONE_CUE),
        (ArticleField.TITLE, _TITLE_CUE),
    ):
        if cue.search(text):
            return field
    return None


# What a question about the article says about the asking, not about the article: left out of
# the search, so 长治大抓项目那篇文章署名的作者是谁 looks for 长治大抓项目, not for 作者.
_ASKING_WORDS = re.compile(_alternatives(
    rf"(?:是|由)?{_WHO}(?:记者|通讯员)?(?:来)?(?:写|采写|撰写|执笔|报道|供|发|拍|登|刊)的?稿?",
    r"(?:署名的?|原文的?)?(?:作者|记者|通讯员|撰稿人|摄影)(?:是|有|叫)?",
    r"署名", r"最早", r"(?:是|由)?哪家(?:报纸|报社|媒体|网站|报)(?:最早)?(?:登|刊|发|转载)?的?",
    r"(?:是|在)?(?:哪一?期|第几期)(?:登|刊|发)?的?", r"(?:来源|出处)(?:是|于)?",
    r"(?:这|那)(?:篇|条|则)", r"(?:稿子|文章|消息|报道)(?=[，,？?]|$)", r"是?谁",
))


def search_text(question: str) -> str:
    """The question as searched for: a question about the article itself without the words
    that ask who wrote it (they would match articles that mention 作者 or 记者)."""
    if article_field(question) is None:
        return question
    stripped = _ASKING_WORDS.sub("", to_simplified(question)).strip("，,？?。 ")
    return stripped if len(stripped) >= 2 else question


def analyse(question: str) -> QuestionFrame:
    text = to_simplified(question)
    return QuestionFrame(
        text=text,
        kind=question_type(text),
        about_article=article_field(text),
        wants_list=bool(_LIST_CUE.search(text)),
        wants_zone_list=bool(_ZONE_LIST_CUE.search(text)),
    )
