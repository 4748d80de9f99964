"""Conversation state and reading follow-ups, on hand-built turns and a hand-built zone table.

Fast and model-free: the end-to-end behaviour over a real index is in test_conversation_service.py.
"""

from __future__ import annotations

import pytest

from qa_bot.conversation import (
    MAX_TURN_CHARS,
    TURNS_KEPT,
    Conversation,
    ConversationStore,
    Turn,
    browse_target,
    implicit_followup,
    newest_first,
    read_message,
    with_context,
)
from qa_bot.records import Article
from qa_bot.zones import ZoneTable

ZONES = ZoneTable.build(
    ["侯马经济开发区", "临汾经济开发区", "广灵经济技术开发区", "原平经济技术开发区"])

MEETING = Turn(
    question="侯马经济开发区的调度会是谁主持的？", zone="侯马经济开发区",
    zone_mention="侯马经济开发区", article_id="i/2", title="召开2023年项目建设第19次调度会",
    people=("李俊胜",),
)
PARK = Turn(
    question="原平那个“长三角”精细化工科技产业园占地多少？", zone="原平经济技术开发区",
    zone_mention="原平", article_id="i/7", title="“长三角”精细化工科技产业园在原平开工奠基",
    projects=("长三角",),
)
PROJECT = Turn(
    question="晋城经开区与四川凝彩科技签的是什么项目？", article_id="i/9", title="46个项目加快推进",
    projects=("半导体封装中心项目",),
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- readings ------------------------------------------------------------------------------
def test_a_bare_zone_with_ne_swaps_the_zone_and_keeps_the_frame():
    reading = read_message("那临汾开发区呢？", MEETING, ZONES)
    assert reading.kind == "zone_swap"
    assert reading.question == reading.understood_as == "临汾开发区的调度会是谁主持的？"
    assert not reading.prefer_article  # another zone: not the article under discussion


def test_a_subject_with_ne_takes_the_previous_predicate():
    previous = Turn(question="侯马经济开发区当天签约的3个项目计划总投资多少？",
                    zone="侯马经济开发区", zone_mention="侯马经济开发区", article_id="i/1",
                    title="t")
    reading = read_message("那临汾开发区签下的两个项目呢？", previous, ZONES)
    assert reading.kind == "zone_swap"
    assert reading.understood_as == "临汾开发区签下的两个项目计划总投资多少？"


def test_a_bare_attribute_with_ne_keeps_the_subject_and_the_article():
    reading = read_message("计划投资呢？", PARK, ZONES)
    assert reading.kind == "attribute_swap"
    assert reading.understood_as == "原平那个“长三角”精细化工科技产业园计划投资多少？"
    assert reading.prefer_article == "i/7"


@pytest.mark.parametrize(("message", "understood"), [
    ("他要求全区上下做什么？", "李俊胜要求全区上下做什么？"),
    ("她是哪里人？", "李俊胜是哪里人？"),
])
def test_a_personal_pronoun_is_filled_with_the_person_named_before(message, understood):
    reading = read_message(message, MEETING, ZONES)
    assert reading.kind == "pronoun"
    assert reading.understood_as == reading.words == understood
    assert reading.prefer_article == "i/2"


def test_this_project_is_filled_with_the_project_named_before():
    reading = read_message("这个项目总投资多少？", PROJECT, ZONES)
    assert reading.understood_as == "半导体封装中心项目总投资多少？"
    assert reading.prefer_article == "i/9"


@pytest.mark.parametrize("message", [
    "这些项目总投资多少？", "其中放在开发区的有几个？", "对方表示将在哪些方面合作？",
    "第一点是什么？", "该区今年签约了几个项目？",
])
def test_pointers_without_a_known_referent_prefer_the_article_under_discussion(message):
    reading = read_message(message, PROJECT if "项目" not in message else MEETING, ZONES)
    assert reading.kind == "pronoun"
    assert reading.understood_as.endswith("》）")  # says which article it is read with
    assert reading.prefer_article


@pytest.mark.parametrize("message", ["为什么？", "多少？", "什么时候？", "是谁呢？", "那在哪里？"])
def test_a_bare_question_word_asks_about_what_was_just_said(message):
    reading = read_message(message, MEETING, ZONES)
    assert reading.kind == "bare"
    assert reading.prefer_article == "i/2"
    assert reading.question.startswith("侯马经济开发区的调度会")  # the subject it leaves out
    assert reading.understood_as == f"{message}（接着谈《召开2023年项目建设第19次调度会》）"


def test_an_ordinal_point_is_looked_for_the_way_news_lists_points():
    reading = read_message("第一点是什么？", MEETING, ZONES)
    assert "一是" in reading.question and "一是" not in reading.understood_as


def test_more_of_the_same_leaves_out_the_zone_and_the_article_shown():
    reading = read_message("还有别的开发区吗？", MEETING, ZONES)
    assert reading.kind == "more"
    assert reading.exclude_article == "i/2"
    assert "侯马" not in reading.question and "调度会" in reading.question
    assert reading.understood_as.startswith("除侯马经济开发区外")


@pytest.mark.parametrize("message", [
    "那临汾经济开发区的产业集聚区今年落户了多少个项目？",  # its own zone and question word
    "广灵经开区有多少家再生金属企业？",
    "临汾开发区举办了什么活动？",
    "其他开发区召开调度会了吗？",  # 其他 is no pointer
    "总投资多少？",  # no pointer: decided by implicit_followup, with retrieval
])
def test_a_message_that_names_its_own_subject_is_a_new_question(message):
    reading = read_message(message, MEETING, ZONES)
    assert reading.kind == "new" and not reading.is_followup
    assert reading.question == message and not reading.understood_as
    assert not reading.prefer_article and not reading.exclude_article


def test_a_question_right_after_browsing_a_zone_is_about_that_zone():
    browsed = Turn(question="侯马开发区", zone="侯马经济开发区", zone_mention="侯马开发区",
                   browsed=True)
    reading = read_message("调度会是谁主持的？", browsed, ZONES)
    assert reading.kind == "zone_carry"
    assert reading.understood_as == "侯马经济开发区调度会是谁主持的？"
    assert read_message("临汾开发区举办了什么活动？", browsed, ZONES).kind == "new"
    assert read_message("再生金属", browsed, ZONES).kind == "new"  # another browse


def test_without_a_last_turn_everything_is_a_new_question():
    for message in ("他要求做什么？", "那临汾开发区呢？", "还有别的开发区吗？"):
        assert read_message(message, None, ZONES).kind == "new"


def test_implicit_followup_needs_the_words_in_the_article_under_discussion():
    coverage = {("总投资多少？", "i/2"): 1.0, ("总投资多少？", "i/5"): 0.6,
                ("谁主持了企业管理讲座？", "i/2"): 0.2, ("谁主持了企业管理讲座？", "i/5"): 0.9}

    def cover(text: str, article_id: str) -> float:
        return coverage.get((text, article_id), 0.0)

    assert implicit_followup("总投资多少？", MEETING, ZONES, cover, "i/5")
    assert implicit_followup("总投资多少？", MEETING, ZONES, cover, "i/2")
    assert not implicit_followup("谁主持了企业管理讲座？", MEETING, ZONES, cover, "i/5")
    assert not implicit_followup("临汾开发区总投资多少？", MEETING, ZONES, lambda *_: 1.0, "i/5")
    assert not implicit_followup("调度会", MEETING, ZONES, lambda *_: 1.0, "i/5")  # no question


def test_context_puts_what_the_previous_question_was_about_first():
    assert (with_context("总投资多少？", PARK)
            == "原平那个“长三角”精细化工科技产业园占地，总投资多少？")


# -- browsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(("message", "target"), [
    ("侯马开发区", ("zone", "侯马经济开发区")),
    ("广灵", ("zone", "广灵经济技术开发区")),
    ("再生金属", ("topic", "再生金属")),
    ("再生金属。", ("topic", "再生金属")),
])
def test_a_zone_or_topic_alone_is_a_request_to_browse(message, target):
    assert browse_target(message, ZONES) == target


@pytest.mark.parametrize("message", [
    "再生金属企业有多少家？", "那临汾开发区呢？", "侯马开发区召开了什么会",
    "这是一段很长的没有问号的句子但不是话题", "？", "a",
])
def test_questions_and_long_text_are_not_browse_requests(message):
    assert browse_target(message, ZONES) is None


def test_browse_lists_newest_issue_first_then_print_order():
    def article(issue: str, line: int, date: str = "") -> Article:
        return Article(f"{issue}/{line}", issue, f"t{line}", "x", date=date, line=line)

    old, new_a, new_b = article("2023-01", 1), article("2023-06", 9), article("2023-06", 2)
    order = {"2023-01": "2023-02-01T00:00", "2023-06": "2023-07-01T00:00"}
    assert newest_first([old, new_a, new_b], order) == [new_b, new_a, old]
    dated = article("x", 1, date="2024-01-01")
    assert newest_first([old, dated], order)[0] == dated


# -- state -----------------------------------------------------------------------------------
def test_a_conversation_forgets_after_its_idle_time():
    clock = Clock()
    conversation = Conversation(idle_seconds=60, clock=clock)
    conversation.remember(MEETING)
    clock.now = 59
    assert conversation.last() == MEETING
    clock.now = 59 + 61
    assert conversation.last() is None


def test_a_conversation_keeps_a_few_short_turns():
    conversation = Conversation(idle_seconds=0)
    long_turn = Turn(question="长" * 5000, people=tuple(f"人{i}" for i in range(50)))
    for _ in range(10):
        conversation.remember(long_turn)
    assert len(conversation.turns) == TURNS_KEPT
    assert len(conversation.last().question) == MAX_TURN_CHARS
    assert conversation.footprint_bytes() < 8_000  # bounded whatever the input
    conversation.reset()
    assert conversation.last() is None


def test_the_store_is_bounded_and_drops_the_least_recently_used():
    store = ConversationStore(idle_seconds=0, max_conversations=3)
    first = store.get("a")
    store.get("b")
    store.get("c")
    assert store.get("a") is first  # used again: now the most recent
    store.get("d")
    assert len(store) == 3
    assert store.get("a") is first
    assert store.get("b") is not None and len(store) == 3  # "b" was dropped and made anew


def test_the_store_starts_over_after_expiry_and_reset():
    clock = Clock()
    store = ConversationStore(idle_seconds=10, max_conversations=10, clock=clock)
    conversation = store.get((1, 2))
    conversation.remember(MEETING)
    assert store.get((1, 2)).last() == MEETING
    store.reset((1, 2))
    assert store.get((1, 2)).last() is None
    store.get((1, 2)).remember(MEETING)
    clock.now = 11
    assert store.get((1, 2)).last() is None
