"""Answer-type rules, sentence choice and the decline path, on small hand-built articles."""

from collections import Counter

import pytest

from qa_bot.answer import Answerer, QuestionType, answer_windows, question_type
from qa_bot.config import AnswerSettings
from qa_bot.lexical import LexicalTokenizer
from qa_bot.records import Article, Chunk, Hit
from qa_bot.spans import role_holders
from qa_bot.zones import ZoneTable

ARTICLES = [
    Article("i/1", "i", "发展再生金属产业 逐步形成聚集效应", zone="广灵经济技术开发区",
            byline="王云霞",
            text="本刊讯 近年来，广灵经济技术开发区发展再生金属产业。\n"
                 "全区现有规模以上企业24家。目前全区已有再生金属企业13家，其中已投产4家。\n"
                 "特别是再生铝，预计2023年产能将达到26万吨。"),
    Article("i/2", "i", "召开2023年项目建设第19次调度会", zone="侯马经济开发区", byline="贺玉斌",
            text="本刊讯 6月12日，侯马经济开发区召开2023年项目建设第19次调度会。"
                 "党工委副书记、管委会主任李俊胜主持会议。\n"
                 "李俊胜要求，全区上下要统一思想。要集中精力，尽最大努力完成工业投资；"
                 "要紧盯重点，尽最大努力破解企业遇到的困难。"),
]


@pytest.fixture(scope="module")
def answerer():
    zones = ZoneTable.build((a.zone for a in ARTICLES), texts=(a.text for a in ARTICLES))
    tokenizer = LexicalTokenizer(zones.words())
    df = Counter()
    for article in ARTICLES:
        df.update(set(tokenizer.tokenize(article.text)))
    return Answerer(AnswerSettings(), tokenizer, zones, df, len(ARTICLES))


def hits_for(*article_ids, dense=0.9):
    by_id = {a.article_id: a for a in ARTICLES}
    hits = []
    for rank, article_id in enumerate(article_ids):
        a = by_id[article_id]
        chunk = Chunk(a.article_id, 0, a.text, 0, len(a.text), a.issue, a.title, a.zone, a.byline)
        hits.append(Hit(chunk, score=1.0 - 0.1 * rank, dense_score=dense))
    return hits


@pytest.mark.parametrize(("question", "kind"), [
    ("广灵经开区有多少家再生金属企业？", QuestionType.NUMBER),
    ("召开的是第几次调度会？", QuestionType.NUMBER),
    ("调度会由谁主持？", QuestionType.PERSON),
    ("哪位副市长参加了？", QuestionType.PERSON),
    ("调度会是哪天召开的？", QuestionType.DATE),
    ("什么时候投产？", QuestionType.DATE),
    ("哪个园区在发展再生金属？", QuestionType.PLACE),
    ("陈华一行去哪里考察？", QuestionType.PLACE),
    ("讲座的主题是什么？", QuestionType.OTHER),
])
def test_question_types(question, kind):
    assert question_type(question) == kind


def answer(answerer, question, *article_ids, dense=0.9):
    return answerer.answer(question, hits_for(*article_ids, dense=dense),
                           {a.article_id: a for a in ARTICLES})


def highlighted(result):
    start, end = result.sentence.span
    return result.sentence.text[start:end]


def test_number_answer_is_the_one_beside_the_question_words(answerer):
    result = answer(answerer, "广灵经开区有多少家再生金属企业？", "i/1", "i/2")
    assert highlighted(result) == "13家"
    assert result.sentence.chunk.byline == "王云霞"


@pytest.mark.parametrize(("question", "order", "span"), [
    pytest.param("广灵的再生铝预计2023年产能能达到多少？", ("i/1", "i/2"), "26万吨",
                 id="number with its unit"),
    pytest.param("侯马经开区的调度会由谁主持？", ("i/2", "i/1"), "李俊胜",
                 id="person after a role or before an action"),
    pytest.param("侯马经济开发区哪天召开了调度会？", ("i/2", "i/1"), "6月12日", id="date"),
    pytest.param("哪个园区在发展再生金属产业？", ("i/1", "i/2"), "广灵经济技术开发区",
                 id="place question answered by the zone"),
])
def test_the_span_is_what_the_question_type_asks_for(answerer, question, order, span):
    assert highlighted(answer(answerer, question, *order)) == span


def test_a_subject_in_the_sentence_before_is_kept_with_its_clause(answerer):
    result = answer(answerer, "侯马开发区负责人要求怎样完成工业投资任务？", "i/2", "i/1")
    assert "尽最大努力完成工业投资" in result.sentence.text


def test_declines_a_zone_the_corpus_never_mentions(answerer):
    result = answer(answerer, "太原经开区今年引进了几家半导体企业？", "i/1", "i/2")
    assert result.declined
    assert "太原经开区" in result.declined_reason
    assert result.passages  # the nearest articles are still listed


def test_declines_when_the_best_sentence_is_about_another_zone(answerer):
    result = answer(answerer, "侯马经开区的光伏玻璃项目产能是多少？", "i/1", "i/2")
    assert result.declined


def test_declines_when_little_of_the_question_is_found(answerer):
    result = answer(answerer, "物流园区的冷链仓储什么时候投入运营？", "i/2", "i/1", dense=0.8)
    assert result.declined
    assert result.declined_reason


def test_no_hits_is_a_decline_not_an_error(answerer):
    result = answerer.answer("随便问问？", [], {})
    assert result.declined and result.passages == []


def test_windows_pair_neighbouring_sentences_of_a_paragraph_only():
    text = "第一句。第二句。\n第三句。"
    windows = {text[a:b] for a, b in answer_windows(text, 160)}
    assert {"第一句。", "第二句。", "第三句。", "第一句。第二句。"} == windows


def test_a_role_in_the_question_finds_the_person_holding_it(answerer):
    """News names the role once (县长徐计连) and then only the person (徐计连强调…)."""
    text = ("本刊讯 近日，沁源县召开化工园区建设工作推进会。会议听取了化工园区认定情况的汇报。"
            "县委副书记、县长徐计连出席并讲话。\n"
            "徐计连强调，要将化工园区安全等级评定复核和认定工作紧紧抓在手上。")
    article = Article("i/3", "i", "加大化工园区建设工作推进力度", zone="沁源经济开发区", text=text)
    chunk = Chunk("i/3", 0, text, 0, len(text), "i", article.title, article.zone)
    answer = answerer.answer("县长对化工园区认定工作提出了哪些要求？",
                             [Hit(chunk, score=1.0, dense_score=0.9)], {"i/3": article})
    assert "安全等级评定复核" in answer.sentence.text
    assert role_holders(["县长", "书记"], text, answerer.tokenizer) == {"县长": {"徐计连"}}
    assert role_holders(["县长"], "会上，县长", answerer.tokenizer) == {}  # the role ends the text


# -- the answer stage of issue 10: article fields, spans tied to the question, lists -------------
SIGNING = Article(
    "j/1", "j", "晋中集中签约17个项目", zone="晋中市", byline="记者 刘少伟 实习生 康书维",
    byline_names=("刘少伟", "康书维"),
    text="本刊讯 2月27日，晋中市举行招商引资项目集中签约仪式，17个项目集中签约，总投资572亿元。\n"
         "今年晋中全年招商引资任务为1500亿元，此次签约占全年任务的38.1%。")
TALKS = Article(
    "j/2", "j", "与康泰生物考察团举行工作会谈", zone="晋中市", byline="文章来源：晋中日报",
    text="本刊讯 晋中市长常书铭与康泰生物考察团举行工作会谈。考察团由郑海发带队。")
WIKI = Article(
    "w/1", "w", "张居正 (小说)",
    text="《张居正》是熊召政创作的长篇历史小说。作者熊召政为此修改了2558处。")


def answer_over(answerer, question, *articles, dense=0.9):
    hits = []
    for rank, a in enumerate(articles):
        chunk = Chunk(a.article_id, 0, a.text, 0, len(a.text), a.issue, a.title, a.zone, a.byline)
        hits.append(Hit(chunk, score=1.0 - 0.1 * rank, dense_score=dense))
    return answerer.answer(question, hits, {a.article_id: a for a in articles})


def test_who_wrote_it_is_answered_by_the_byline_names(answerer):
    result = answer_over(answerer, "晋中签约那条稿子是谁采写的？", SIGNING, TALKS)
    assert result.sentence.source == "byline"
    assert result.sentence.span_text == "刘少伟、康书维"
    assert "记者 刘少伟 实习生 康书维" in result.sentence.text  # the byline as printed, cited
    assert result.sentence.chunk.article_id == "j/1"


def test_which_paper_printed_it_is_answered_by_the_outlet(answerer):
    result = answer_over(answerer, "康泰生物会谈那篇，最早是哪家报纸登的？", TALKS, SIGNING)
    assert (result.sentence.source, result.sentence.span_text) == ("outlet", "晋中日报")


def test_an_author_inside_a_passage_without_byline_is_read_from_the_text(answerer):
    result = answer_over(answerer, "《张居正》这篇文章的作者是谁？", WIKI)
    assert result.sentence.source == "passage"
    assert "熊召政" in result.sentence.text


@pytest.mark.parametrize(("question", "span"), [
    ("晋中这次签约项目总投资多少亿元？", "572亿元"),  # not 2月 nor 17个, the first in sight
    ("晋中全年招商引资任务是多少？", "1500亿元"),
    ("此次签约占全年任务的比例是多少？", "38.1%"),
])
def test_the_number_is_the_one_tied_to_the_question_words(answerer, question, span):
    assert answer_over(answerer, question, SIGNING, TALKS).sentence.span_text == span


def test_which_zones_is_answered_with_each_zone_cited(answerer):
    first = Article("k/1", "k", "侯马开发区召开调度会", zone="侯马经济开发区",
                    text="本刊讯 6月12日，侯马经济开发区召开项目建设调度会。")
    second = Article("k/2", "k", "临汾开发区召开调度会", zone="临汾经济开发区",
                     text="本刊讯 6月13日，临汾经济开发区召开项目建设调度会。")
    other = Article("k/3", "k", "广灵再生金属", zone="广灵经济技术开发区",
                    text="本刊讯 广灵经济技术开发区发展再生金属产业。")
    zones = ZoneTable.build([first.zone, second.zone, other.zone])
    tokenizer = LexicalTokenizer(zones.words())
    df = Counter()
    for article in (first, second, other):
        df.update(set(tokenizer.tokenize(article.text)))
    local = Answerer(AnswerSettings(), tokenizer, zones, df, 3)
    result = answer_over(local, "哪些开发区召开了项目建设调度会？", first, second, other)
    assert [item.chunk.zone for item in result.items] == ["侯马经济开发区", "临汾经济开发区"]
    assert result.sentence == result.items[0]


def test_the_article_asked_about_is_the_one_whose_headline_the_question_names(answerer):
    """Retrieval may rank another article of the same place first; the headline decides."""
    result = answer_over(answerer, "康泰生物工作会谈那篇稿子是谁写的？", SIGNING, TALKS)
    assert result.sentence.chunk.article_id == "j/2"
    assert result.sentence.span_text == "文章来源：晋中日报"  # an organisation, as printed


def test_a_company_question_marks_the_company_and_traditional_sums_keep_their_unit(answerer):
    text = ("本刊讯 該項目位於相山經濟開發區，固定資產投資6億元。"
            "会上，开发区管委会与包头市一禾稀土铝业科技材料有限公司签约。")
    article = Article("t/1", "t", "泰屹智能製造產業園項目加緊施工", zone="相山經濟開發區",
                      text=text)
    company = answer_over(answerer, "开发区管委会和哪家公司签了约？", article)
    assert company.sentence.span_text == "包头市一禾稀土铝业科技材料有限公司"
    assert answer_over(answerer, "该项目固定资产投资多少？", article).sentence.span_text == "6億元"


class _StubReader:
    """A reader that always marks the same characters with a given score."""

    def __init__(self, start, end, score):
        self.start, self.end, self.score = start, end, score

    def read(self, question, contexts, top=1):
        from qa_bot.reader import ReaderSpan

        return [ReaderSpan(i, self.start, self.end, self.score) for i in range(len(contexts))]


@pytest.mark.parametrize(("score", "expected"), [
    (5.0, "签约仪式"),  # the reader finds an answer: its span
    (-3.0, "572亿元"),  # it does not: the typed rule's span
])
def test_the_reader_span_is_used_where_the_reader_finds_an_answer(answerer, score, expected):
    reading = Answerer(answerer.settings, answerer.tokenizer, answerer.zones, answerer._df,
                       answerer._documents, reader=_StubReader(0, 4, score))
    sentence = "签约仪式上，17个项目集中签约，总投资572亿元。"
    article = Article("r/1", "r", "晋中集中签约", zone="晋中市", text=sentence)
    result = answer_over(reading, "晋中这次签约项目总投资多少亿元？", article)
    assert result.sentence.span_text == expected
