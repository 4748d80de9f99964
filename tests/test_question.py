"""Question analysis: the span type asked for, questions about the article itself, lists."""

import pytest

from qa_bot.question import ArticleField, QuestionType, analyse, search_text


@pytest.mark.parametrize(("question", "field"), [
    ("兴县那条签约消息是谁写的？", ArticleField.BYLINE),
    ("介休两大项目落户的消息是哪两位写的？", ArticleField.BYLINE),
    ("统计局领导去临淄看企业那篇，署名记者是谁？", ArticleField.BYLINE),
    ("柴桑工业园那条消息是哪位记者写的？", ArticleField.BYLINE),
    ("吕梁那条招商成绩的稿子是谁采写的？", ArticleField.BYLINE),
    ("孙光木去高唐那条消息是谁供的稿？", ArticleField.BYLINE),
    ("晋中市长跟康泰生物谈的那篇，最早是哪家报纸登的？", ArticleField.OUTLET),
    ("侯马调度会那条消息是哪一期登的？", ArticleField.ISSUE),
    ("再生金属那篇稿子是哪个开发区的？", ArticleField.ZONE),
])
def test_questions_about_the_article_itself(question, field):
    assert analyse(question).about_article is field


@pytest.mark.parametrize("question", [
    "《张居正》修正版中，作者熊召政一共修改了多少处？",  # an author inside the text
    "海外华人记者在晋城看到的那个无尘车间里有多少台设备？",  # 记者 as a subject
    "新闻发布会由谁主持？",  # 新闻 without asking who wrote it
    "侯马经济开发区的调度会是谁主持的？",
])
def test_questions_about_the_text_are_not_about_the_article(question):
    assert analyse(question).about_article is None


@pytest.mark.parametrize(("question", "kind"), [
    ("曾都区为啥又另外抽人成立小组专门出去跑招商？", QuestionType.REASON),
    ("盐湖高新区请咨询公司来，最终想达到什么目标？", QuestionType.REASON),
    ("丹麦在中国北欧的生意伙伴里排老几？", QuestionType.NUMBER),
    ("晋中一年的引资指标是多大的盘子？", QuestionType.NUMBER),
])
def test_new_question_types(question, kind):
    assert analyse(question).kind is kind


def test_lists_of_zones_are_told_from_lists_of_places():
    assert analyse("哪些开发区召开了调度会？").wants_zone_list
    assert not analyse("雅芳河流经哪些地方？").wants_zone_list
    assert analyse("晋中有哪两个园区作了推介？").wants_list


def test_the_search_leaves_out_the_words_that_ask_who_wrote_it():
    assert search_text("长治大抓项目那篇文章署名的作者是谁？") == "长治大抓项目文章"
    assert search_text("兴县那条签约消息是谁写的？") == "兴县签约消息"
    question = "侯马经济开发区的调度会是谁主持的？"
    assert search_text(question) == question  # not about the article: searched as asked
