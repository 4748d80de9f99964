"""Follow-ups through the real answer path: QAService over the seed issue, real model and index.

Each follow-up kind is pinned on a two- or three-turn conversation, and so is the other side:
a question that names its own subject gets exactly the answer it gets asked alone.
"""

from __future__ import annotations

import pytest

from qa_bot.conversation import Conversation
from qa_bot.render import answer_text
from qa_bot.repl import Repl

pytestmark = pytest.mark.slow

HOUMA, LINFEN, GUANGLING = "侯马经济开发区", "临汾经济开发区", "广灵经济技术开发区"


def converse(service, *messages: str):
    """Ask the messages in one conversation; the answers, in order."""
    conversation = Conversation(idle_seconds=0)
    return [service.answer(message, conversation=conversation) for message in messages]


def test_a_pronoun_is_read_as_the_person_of_the_last_answer(seed_service):
    first, follow = converse(seed_service, "侯马经济开发区的调度会是谁主持的？",
                             "他要求全区上下做什么？")
    assert "李俊胜" in first.sentence.text
    assert follow.understood_as == "李俊胜要求全区上下做什么？"
    assert follow.sentence.chunk.zone == HOUMA
    assert "统一思想" in follow.sentence.text
    assert "理解为：李俊胜要求全区上下做什么？" in answer_text(follow)


def test_a_bare_zone_with_ne_asks_the_same_about_that_zone(seed_service):
    _, follow = converse(seed_service, "长治经开区举办了什么讲座？", "那临汾开发区呢？")
    assert follow.understood_as == "临汾开发区举办了什么讲座？"
    assert follow.sentence.chunk.zone == LINFEN
    assert follow.passages[0].chunk.zone == LINFEN


def test_a_question_without_a_subject_stays_with_the_article(seed_service):
    first, follow = converse(seed_service, "广灵经开区有多少家再生金属企业？",
                             "规模以上企业有多少家？")
    assert first.passages[0].chunk.zone == GUANGLING
    assert follow.understood_as.startswith("规模以上企业有多少家？（接着谈《发展再生金属产业")
    assert follow.passages[0].chunk.zone == GUANGLING
    assert "24家" in follow.sentence.text


def test_a_bare_question_word_asks_about_what_was_just_said(seed_service):
    _, follow = converse(seed_service, "长治经开区举办了什么讲座？", "什么时候？")
    assert follow.understood_as.startswith("什么时候？（接着谈《企业刮起“头脑风暴”")
    assert "6月13日" in follow.sentence.text


def test_more_of_the_same_leaves_the_article_already_shown(seed_service):
    _, follow = converse(seed_service, "侯马经济开发区的调度会是谁主持的？", "还有别的开发区吗？")
    assert follow.understood_as.startswith(f"除{HOUMA}外")
    assert all(hit.chunk.zone != HOUMA for hit in follow.passages)


@pytest.mark.parametrize(("first", "question"), [
    ("广灵经开区有多少家再生金属企业？", "祁县经济开发区党员干部共签订了多少份承诺书？"),
    ("侯马经济开发区的调度会是谁主持的？", "丁小强要求用好多少种招商模式？"),  # no zone named
    ("侯马经济开发区的调度会是谁主持的？", "上党经开区的陈华一行去哪里考察学习？"),
    ("广灵经开区有多少家再生金属企业？", "那临汾经济开发区组织了多少名师生参观企业？"),
])
def test_a_new_question_is_answered_exactly_as_when_asked_alone(seed_service, first, question):
    _, in_conversation = converse(seed_service, first, question)
    alone = seed_service.answer(question)
    assert in_conversation.understood_as == ""
    assert in_conversation.to_dict() == alone.to_dict()


def test_after_the_idle_time_a_follow_up_is_read_alone(seed_service):
    now = [0.0]
    conversation = Conversation(idle_seconds=60, clock=lambda: now[0])
    seed_service.answer("侯马经济开发区的调度会是谁主持的？", conversation=conversation)
    now[0] = 61
    follow = seed_service.answer("他要求全区上下做什么？", conversation=conversation)
    assert follow.understood_as == ""
    assert follow.to_dict() == seed_service.answer("他要求全区上下做什么？").to_dict()


def test_a_zone_or_topic_alone_lists_its_articles(seed_service):
    zone = seed_service.answer("侯马开发区")
    assert [a.zone for a in zone.browse] == [HOUMA]
    topic = seed_service.answer("再生金属")
    assert [a.title for a in topic.browse] == ["发展再生金属产业 逐步形成聚集效应"]
    text = answer_text(topic)
    assert ("发展再生金属产业 逐步形成聚集效应 —— 广灵经济技术开发区 · 王云霞 · bulletin-2023-06"
            in text)
    assert topic.to_dict()["browse"][0]["byline"] == "王云霞"


def test_a_question_after_browsing_a_zone_is_about_that_zone(seed_service):
    listing, follow = converse(seed_service, "侯马开发区", "调度会是谁主持的？")
    assert listing.browse
    assert follow.understood_as == f"{HOUMA}调度会是谁主持的？"
    assert "李俊胜" in follow.sentence.text


def test_only_relevant_passages_are_shown_under_an_answer(seed_service):
    answer = seed_service.answer("广灵经开区有多少家再生金属企业？")
    assert len(answer.passages) == 5  # the service returns them all (eval, --json)
    text = answer_text(answer)
    assert "相关段落（只有这一篇相关）：" in text
    assert "[2]" not in text


def test_the_repl_is_one_conversation_until_new(seed_service):
    repl = Repl(seed_service)
    repl.handle("侯马经济开发区的调度会是谁主持的？")
    assert "理解为：李俊胜要求全区上下做什么？" in repl.handle("他要求全区上下做什么？")
    assert repl.handle(":new") == "已开始新的对话。"
    assert "理解为" not in repl.handle("他要求全区上下做什么？")
    listing = repl.handle("侯马开发区")
    assert "召开2023年项目建设第19次调度会" in listing
    assert "召开2023年项目建设第19次调度会" in repl.handle(":article 1")


def test_the_article_under_discussion_is_appended_never_mixed_in(seed_service):
    retriever = seed_service.loaded.retriever
    question = "丁小强要求用好多少种招商模式？"
    alone = retriever.search(question, k=3)
    other = next(a for a in seed_service.snapshot.articles.values()
                 if a.article_id not in {h.chunk.article_id for h in alone})
    with_article = retriever.search(question, k=3, include_article=other.article_id)
    assert with_article[:3] == alone
    assert [h.chunk.article_id for h in with_article[3:]] == [other.article_id]


def test_the_writer_named_by_a_byline_answer_is_not_the_next_he(seed_service):
    _, byline, follow = converse(seed_service, "侯马经济开发区的调度会是谁主持的？",
                                 "那篇稿子是谁写的？", "他要求全区上下做什么？")
    assert byline.sentence.source == "byline" and byline.sentence.span_text == "贺玉斌"
    assert "贺玉斌" not in follow.understood_as
    assert "统一思想" in follow.sentence.text


def test_a_which_zones_question_is_a_new_question_not_about_the_last_article(seed_service):
    _, listing = converse(seed_service, "广灵经开区有多少家再生金属企业？",
                          "哪些开发区召开了调度会？")
    assert listing.understood_as == ""
    assert listing.sentence.chunk.zone == HOUMA
