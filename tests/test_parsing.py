"""Tests for qa_bot.parsing: the seed issue end to end, every byline/zone form, encodings, JSONL.

Expected values are written by hand from reading the files, not produced by the parser.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa_bot.parsing import InputError, load_file, parse_bulletin, parse_jsonl, read_text
from qa_bot.records import Article, SourceProblem

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "corpus" / "bulletin-2023-06.txt"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def by_title(articles: list[Article]) -> dict[str, Article]:
    return {article.title: article for article in articles}


# ---------------------------------------------------------------------------------------------
# The seed issue

# (line, zone, title, subtitle, byline), in file order, read off the file by hand.
SEED_EXPECTED = [
    (3, "运城经济技术开发区", "深入运城经开区调研重点项目建设等工作", "", "王文军"),
    (17, "侯马经济开发区", "召开2023年项目建设第19次调度会", "", "贺玉斌"),
    (27, "沁源县", "加大开发区化工园区建设工作推进力度", "", "王波"),
    (
        35,
        "沁源县",
        "上党经开区党工委委员、管委会副主任陈华一行赴沁源经开区考察学习",
        "",
        "周旭 张晨帆",
    ),
    (43, "临汾经济开发区", "举办“爱临汾·赢未来”2023年“热爱科学 崇尚科学”科技活动周", "", "崔家豪"),
    (57, "左云经济技术开发区", "为推动高质量发展赋能增势", "走进左云经济技术开发区", "吕平"),
    (77, "文水经济开发区", "多举措开展专项行动 为安全生产保驾护航", "", "魏亚东"),
    (93, "广灵经济技术开发区", "发展再生金属产业 逐步形成聚集效应", "", "王云霞"),
    (111, "祁县经济开发区", "开展“拒绝酒驾醉驾”警示教育", "", "陈强"),
    (123, "长治经济技术开发区", "企业刮起“头脑风暴” 聚智开出管理良方", "", "晓晓妹"),
]


@pytest.fixture(scope="module")
def seed() -> tuple[list[Article], list[SourceProblem]]:
    return load_file(SEED)


def test_seed_has_every_article_in_order_and_no_problems(seed):
    articles, problems = seed
    assert [a.title for a in articles] == [row[2] for row in SEED_EXPECTED]
    assert problems == []


@pytest.mark.parametrize(("index", "expected"), list(enumerate(SEED_EXPECTED)))
def test_seed_article_metadata(seed, index, expected):
    line, zone, title, subtitle, byline = expected
    article = seed[0][index]
    assert (article.line, article.zone, article.title, article.subtitle, article.byline) == (
        line,
        zone,
        title,
        subtitle,
        byline,
    )
    assert article.issue == "bulletin-2023-06"
    assert article.source == str(SEED)
    assert article.date == "2023-06"


@pytest.mark.parametrize("index", range(len(SEED_EXPECTED)))
def test_seed_byline_removed_from_body(seed, index):
    article = seed[0][index]
    for name in article.byline.split():
        assert name not in article.text
    assert not re.search(r"[（(][^（()）]*[）)]$", article.paragraphs[-1])  # nothing bracketed left


@pytest.mark.parametrize("index", range(len(SEED_EXPECTED)))
def test_seed_paragraphs_are_clean(seed, index):
    article = seed[0][index]
    assert article.paragraphs == article.text.split("\n")  # no empty paragraphs
    for para in article.paragraphs:
        assert para == para.strip()
        assert "#" not in para and "<" not in para and ">" not in para
    assert article.title not in article.paragraphs


@pytest.mark.parametrize(
    ("title", "joined"),
    [
        ("深入运城经开区调研重点项目建设等工作", "运城经开区要加快补齐道路"),
        ("深入运城经开区调研重点项目建设等工作", "给予企业更多帮助，共同把大运品牌擦得更亮"),
        ("举办“爱临汾·赢未来”2023年“热爱科学 崇尚科学”科技活动周", "共赴临汾晶旭"),
        ("举办“爱临汾·赢未来”2023年“热爱科学 崇尚科学”科技活动周", "了解工业世界。"),
        ("多举措开展专项行动 为安全生产保驾护航", "对存在的问题隐患"),
        ("发展再生金属产业 逐步形成聚集效应", "目前，全区已落地"),
        ("开展“拒绝酒驾醉驾”警示教育", "抓早抓小"),
    ],
)
def test_seed_mid_sentence_splits_rejoined(seed, title, joined):
    assert joined in by_title(seed[0])[title].text


def test_seed_paragraph_counts(seed):
    # Counted by hand: printed paragraphs after rejoining splits (### headings count as one).
    counts = [len(a.paragraphs) for a in seed[0]]
    assert counts == [3, 3, 2, 3, 2, 8, 5, 6, 3, 5]


def test_seed_superscript(seed):
    text = by_title(seed[0])["为推动高质量发展赋能增势"].text
    assert "标准厂房面积为71654m²，现已基本完工" in text
    assert "sup" not in text


def test_seed_section_headings_are_paragraphs(seed):
    article = by_title(seed[0])["为推动高质量发展赋能增势"]
    assert article.paragraphs[1] == "“春来”早“筑巢”为项目落地做好开工准备"
    assert article.paragraphs[3] == "“腾笼”引“俊鸟”为产业链健全做好谋划"
    assert article.paragraphs[5] == "“聚能”搭“金窝”为来左投资项目做好服务"
    assert article.paragraphs[0].startswith("建区八年，左云经济技术开发区拼搏实干")
    assert article.paragraphs[-1].endswith("推动全区经济高质量发展迈上新的台阶。")
    assert "走进左云" not in article.text  # the subtitle is not body text


def test_seed_repeated_byline_removed_everywhere(seed):
    article = by_title(seed[0])["企业刮起“头脑风暴” 聚智开出管理良方"]
    assert article.byline == "晓晓妹"
    assert article.paragraphs[1].endswith(
        "为大家掌握现代企业管理基本原理和主要职能奠定了一定的理论基础。"
    )
    assert article.paragraphs[-1].endswith("助力企业实现更好更快的发展。")


def test_seed_ordinary_parentheses_stay(seed):
    article = by_title(seed[0])["发展再生金属产业 逐步形成聚集效应"]
    assert "《促进再生金属产业发展的扶持办法（试行）》" in article.text
    assert article.paragraphs[-1].endswith("厚植产业发展土壤。")


def test_seed_lead_kept_as_printed(seed):
    first = seed[0][0]
    assert first.paragraphs[0].startswith("本刊讯 近日，运城市委书记丁小强深入运城经济技术开发区")
    assert "运城市委书记丁小强" not in first.title


def test_seed_article_ids_unique_stable_and_shaped(seed):
    ids = [a.article_id for a in seed[0]]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"bulletin-2023-06/[0-9a-f]{8}", i) for i in ids)
    again, _ = parse_bulletin(SEED.read_text(encoding="utf-8"), "bulletin-2023-06")
    assert [a.article_id for a in again] == ids


def test_article_ids_survive_an_inserted_article():
    text = SEED.read_text(encoding="utf-8")
    before, _ = parse_bulletin(text, "issue")
    inserted = text.replace(
        "侯马经济开发区\n",
        "太谷经济开发区\n\n## 新插入的稿件\n\n本刊讯 近日，开发区召开会议。（新人）\n\n"
        "侯马经济开发区\n",
        1,
    )
    after, _ = parse_bulletin(inserted, "issue")
    assert len(after) == len(before) + 1
    assert {a.article_id for a in before} <= {a.article_id for a in after}
    old = {a.article_id: a for a in before}
    for article in after:
        if article.article_id in old:
            assert article.content_hash() == old[article.article_id].content_hash()


def test_seed_traditional_characters_preserved():
    text = SEED.read_text(encoding="utf-8").replace("侯马经济开发区", "侯馬經濟開發區")
    articles, _ = parse_bulletin(text, "t")
    article = by_title(articles)["召开2023年项目建设第19次调度会"]
    assert article.zone == "侯馬經濟開發區"
    assert "侯馬經濟開發區召开" in article.text


# ---------------------------------------------------------------------------------------------
# Byline forms (tests/fixtures/bylines.txt)


@pytest.fixture(scope="module")
def bylines() -> tuple[list[Article], list[SourceProblem]]:
    return load_file(FIXTURES / "bylines.txt")


@pytest.mark.parametrize(
    ("title", "byline", "names", "last_paragraph"),
    [
        (
            "召开安全生产工作会议",
            "撰稿:冯慧媛",
            "冯慧媛",
            "会议要求，各企业要压实主体责任，确保安全生产形势稳定。",
        ),
        ("举办招商推介会", "通讯员 张三 李四", "张三 李四",
         "推介会上，开发区介绍了营商环境和产业政策。"),
        ("新能源项目开工", "记者 王五", "王五", "项目建成后年产值可达30亿元。"),
        ("开展消防演练", "赵六、钱七", "赵六 钱七", "演练提高了企业员工的应急处置能力。"),
        ("召开企业座谈会", "孙八", "孙八", "与会企业就用工、融资等问题进行了交流。"),
        ("推进项目建设", "周九", "周九", "会议强调，要强化要素保障。"),
        ("出台扶持办法", "", "", "办法自发布之日起施行，有效期三年。"),
        ("举办技能大赛", "文/吴十", "吴十", "大赛设焊工、电工两个项目。"),
        ("召开招商工作例会", "记者 王五 通讯员 张三", "王五 张三",
         "会议通报了一季度招商引资完成情况。"),
    ],
)
def test_byline_forms(bylines, title, byline, names, last_paragraph):
    """`byline` is printed as is (outer brackets removed); `byline_names` holds the people."""
    article = by_title(bylines[0])[title]
    assert article.byline == byline
    assert " ".join(article.byline_names) == names
    assert article.paragraphs[-1] == last_paragraph
    assert article.zone == "太原经济技术开发区"
    for name in names.split():
        assert name not in article.text
    for marker in ("撰稿", "通讯员", "记者", "文/", "("):
        assert marker not in article.text


def test_byline_after_lead_marker(bylines):
    article = by_title(bylines[0])["新能源项目开工"]
    assert article.paragraphs[0] == "本刊讯 3月8日，开发区新能源项目开工建设，总投资20亿元。"


def test_repeated_byline_recorded_once_and_removed(bylines):
    article = by_title(bylines[0])["推进项目建设"]
    assert article.paragraphs == [
        "本刊讯 3月15日，开发区召开项目推进会。",
        "会议指出，要加快项目建设进度。",
        "会议强调，要强化要素保障。",
    ]


def test_ordinary_parentheses_are_not_bylines(bylines):
    article = by_title(bylines[0])["出台扶持办法"]
    assert article.paragraphs == [
        "本刊讯 3月18日，开发区出台《促进产业发展的扶持办法（试行）》。",
        "同时印发了配套实施细则（暂行）",
        "办法自发布之日起施行，有效期三年。",
    ]


def test_missing_byline_and_byline_only_article_are_reported(bylines):
    articles, problems = bylines
    assert "只有署名的稿件" not in by_title(articles)
    assert len(articles) == 9
    assert [(p.line, p.message) for p in problems] == [
        (41, "article «出台扶持办法»: no byline found"),
        (57, "article «只有署名的稿件» has no body text; skipped"),
    ]
    assert all(p.source == str(FIXTURES / "bylines.txt") for p in problems)


@pytest.mark.parametrize(
    ("last_line", "byline", "names", "kept"),
    [
        ("会议取得圆满成功。(撰稿：冯慧媛)", "撰稿：冯慧媛", "冯慧媛", "会议取得圆满成功。"),
        ("会议取得圆满成功。（文/吕平）", "文/吕平", "吕平", "会议取得圆满成功。"),
        ("会议取得圆满成功。 撰稿：冯慧媛", "撰稿：冯慧媛", "冯慧媛", "会议取得圆满成功。"),
        ("会议取得圆满成功。　吕平　", "吕平", "吕平", "会议取得圆满成功。"),  # full-width spaces
        ("会议取得圆满成功。（通讯员张三、李四）", "通讯员张三、李四", "张三 李四",
         "会议取得圆满成功。"),
        ("会议取得圆满成功。 （王波）", "王波", "王波", "会议取得圆满成功。"),
        ("会议取得圆满成功。（阿依古丽·买买提）", "阿依古丽·买买提", "阿依古丽·买买提",
         "会议取得圆满成功。"),
        ("会议取得圆满成功。吕平", "", "", "会议取得圆满成功。吕平"),  # no space: the text's
        ("会议通过了管理办法（试行）", "", "", "会议通过了管理办法（试行）"),
        ("详见《管理办法（王波）》", "", "", "详见《管理办法（王波）》"),
        ("会议取得圆满成功。（完）", "", "", "会议取得圆满成功。（完）"),
        # An outlet in brackets is an organisation byline: no people, but a byline.
        ("会议取得圆满成功。（山西日报）", "山西日报", "", "会议取得圆满成功。"),
        ("会议取得圆满成功。（图为会议现场）", "", "", "会议取得圆满成功。（图为会议现场）"),
        ("会议取得圆满成功（王波）", "王波", "王波", "会议取得圆满成功"),  # no full stop
        ("会议取得圆满成功。 段鹏飞", "段鹏飞", "段鹏飞", "会议取得圆满成功。"),
        ("会议取得圆满成功。 特此通知", "", "", "会议取得圆满成功。 特此通知"),
        ("会议取得圆满成功。\n\n撰稿 冯慧媛", "撰稿 冯慧媛", "冯慧媛", "会议取得圆满成功。"),
        ("会议取得圆满成功。\n\n张丽、刘洋", "张丽、刘洋", "张丽 刘洋", "会议取得圆满成功。"),
        ("会议取得圆满成功。\n\n再接再厉", "", "", "再接再厉"),
    ],
)
def test_byline_edge_cases(last_line, byline, names, kept):
    text = f"侯马经济开发区\n\n## 标题\n\n本刊讯 近日，开发区召开会议。\n\n{last_line}\n"
    articles, problems = parse_bulletin(text, "x")
    assert articles[0].byline == byline
    assert " ".join(articles[0].byline_names) == names
    assert articles[0].paragraphs[-1] == kept
    assert bool(problems) == (not byline)


def test_bare_name_on_its_own_line_before_next_zone():
    text = (
        "侯马经济开发区\n## 第一篇\n本刊讯 近日，开发区召开会议。\n吕平\n"
        "文水经济开发区\n## 第二篇\n本刊讯 近日，开发区召开会议。（魏亚东）\n"
    )
    articles, problems = parse_bulletin(text, "x")
    assert [(a.zone, a.byline, a.text) for a in articles] == [
        ("侯马经济开发区", "吕平", "本刊讯 近日，开发区召开会议。"),
        ("文水经济开发区", "魏亚东", "本刊讯 近日，开发区召开会议。"),
    ]
    assert problems == []


def test_byline_line_directly_before_next_title_is_not_a_zone():
    text = (
        "侯马经济开发区\n## 第一篇\n本刊讯 近日，开发区召开会议。\n（王波）\n"
        "## 第二篇\n本刊讯 又讯。（李四）\n"
    )
    articles, _ = parse_bulletin(text, "x")
    assert [(a.zone, a.byline) for a in articles] == [
        ("侯马经济开发区", "王波"),
        ("侯马经济开发区", "李四"),
    ]


def test_an_outlet_on_its_own_line_is_a_byline_never_the_next_zone():
    """晋中日报 names a place too, but a newspaper is no section line; an office may be one."""
    text = (
        "晋中市\n\n## 第一篇\n\n本刊讯 晋中集中签约17个项目。\n\n晋中日报\n\n"
        "## 第二篇\n\n本刊讯 榆次区召开会议。（王波）\n\n"
        "晋中市商务局\n\n## 第三篇\n\n本刊讯 商务局召开会议。（李四）\n"
    )
    articles, _ = parse_bulletin(text, "x")
    assert [(a.zone, a.byline, a.paragraphs) for a in articles] == [
        ("晋中市", "晋中日报", ["本刊讯 晋中集中签约17个项目。"]),
        ("晋中市", "王波", ["本刊讯 榆次区召开会议。"]),
        ("晋中市", "李四", ["本刊讯 商务局召开会议。"]),
    ]


# ---------------------------------------------------------------------------------------------
# Bylines and section lines as the press prints them (tests/fixtures/bylines-press.txt)


@pytest.fixture(scope="module")
def press() -> tuple[list[Article], list[SourceProblem]]:
    return load_file(FIXTURES / "bylines-press.txt")


@pytest.mark.parametrize(
    ("title", "zone", "byline", "names"),
    [
        # （X 报道）, and a unit as the section line
        ("专家来高新区调研座谈", "盐湖高新区", "丁一 报道", "丁一"),
        ("吕梁一季度签约项目60个", "吕梁市", "记者 王二 实习生 李三", "王二 李三"),
        # a half-width photo credit as the only attribution
        ("太原十个项目集中开工", "太原市", "张四 摄", "张四"),
        # an outlet as the byline; a person's title as the section line: its place is the zone
        ("与医药企业举行工作会谈", "晋中市", "文章来源：晋中日报", ""),
        ("开发区十个项目开工", "东营港经济开发区", "中国台湾网高唐县台办通讯员 钱六", "钱六"),
        # no section line after an outlet byline: the subtitle names the zone
        ("光电产业产值破百亿元", "晋城经济技术开发区", "作者 孙七", "孙七"),
        ("大同以招商促转型", "大同市", "本报记者 周八 吴九 本报通讯员 郑十", "周八 吴九 郑十"),
        ("统计部门来临淄调研", "淄博市临淄区", "临淄融媒记者冯甲乙 陈丙丁报道", "冯甲乙 陈丙丁"),
        ("沙城工业园厂房即将完工", "九江市柴桑区", "记者褚戊", "褚戊"),
        ("七个招商专班赴外招商", "随州市曾都区", "记者卫己、通讯员蒋庚报道", "卫己 蒋庚"),
        # traditional characters: zone, bare name, outlet/通訊員/記者, 攝影記者 — kept as printed
        ("晉中開發區十個項目集中開工", "轉型綜改示範區晉中開發區", "沈辛壬", "沈辛壬"),
        ("專家來開發區調研", "溧水開發區", "最溧水/今日溧水通訊員 韓癸 記者 楊子丑", "韓癸 楊子丑"),
        ("智能製造產業園加緊施工", "相山經濟開發區", "攝影記者 朱寅卯", "朱寅卯"),
        # the byline inside the lead; a unit (招商办) as the section line stands for its place
        ("百家企业将参加洽谈会", "随州市", "见习记者秦辰巳报道", "秦辰巳"),
        ("招远在沪举办推介会", "招远经济技术开发区", "许 午", "许午"),  # space inside a name
        ("晋城经开区项目加快推进", "晋城经开区", "记者尤未申", "尤未申"),  # repeated mid-article
        ("晋中集中签约项目", "晋中市", "何酉", "何酉"),  # a captioned photo credit after it
        ("考察团来潜考察园区建设", "潜江市", "记者 施亥", "施亥"),  # a caption after it
        ("长治大抓项目", "长治市", "张乙丙", "张乙丙"),  # run on after the last sentence
        # no section line; the title names another zone than the section above
        ("新乡经济技术开发区挂牌 三个项目签约", "新乡经济技术开发区", "记者 孔甲 曹乙",
         "孔甲 曹乙"),
    ],
)
def test_press_byline_and_section_line_forms(press, title, zone, byline, names):
    article = by_title(press[0])[title]
    assert (article.zone, article.byline, " ".join(article.byline_names)) == (zone, byline, names)
    for marker in ("记者", "記者", "通讯员", "报道", "摄", "攝", "（", "("):
        assert marker not in article.text
    for name in article.byline_names:
        assert name not in article.text


def test_press_fixture_warns_only_where_a_zone_comes_from_the_text(press):
    articles, problems = press
    assert len(articles) == 20
    assert [p.message for p in problems] == [
        "article «新乡经济技术开发区挂牌 三个项目签约»: no zone line; "
        "zone «新乡经济技术开发区» taken from the text"
    ]


def test_byline_in_the_lead_is_taken_out_of_it(press):
    article = by_title(press[0])["百家企业将参加洽谈会"]
    assert article.paragraphs[0] == (
        "本刊讯 随州经贸洽谈会筹备工作扎实推进，已有百家企业确定参会。"
    )


@pytest.mark.parametrize(
    ("lead", "kept", "byline"),
    [
        ("新华社太原6月12日电（记者 张三）开发区召开会议。", "新华社太原6月12日电 开发区召开会议。",
         "记者 张三"),
        ("本报讯 记者张三 通讯员李四报道：开发区召开会议。", "本报讯 开发区召开会议。",
         "记者张三 通讯员李四报道"),
        ("本刊讯（通讯员 王五）开发区召开会议。", "本刊讯 开发区召开会议。", "通讯员 王五"),
    ],
)
def test_dateline_bylines_in_the_lead(lead, kept, byline):
    articles, problems = parse_bulletin(f"侯马经济开发区\n## 标题\n{lead}\n会议要求抓落实。\n", "x")
    assert (articles[0].paragraphs[0], articles[0].byline, problems) == (kept, byline, [])


def test_captions_after_the_closing_byline_are_dropped(press):
    assert by_title(press[0])["晋中集中签约项目"].paragraphs == [
        "本刊讯 晋中集中签约17个项目，总投资572亿元。"
    ]
    assert by_title(press[0])["考察团来潜考察园区建设"].paragraphs == [
        "本刊讯 考察团一行参观了园区企业。"
    ]


def test_repeated_byline_is_printed_once(press):
    article = by_title(press[0])["晋城经开区项目加快推进"]
    assert article.paragraphs == [
        "本刊讯 晋城经开区46个项目加快推进。",
        "位于产业园的制造基地一期项目即将建成投产。",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("晋中市", None),
        ("随州市招商办", None),  # an office alone, without brackets: a section line
        ("晋中市委副书记、市长常书铭", None),
        ("介休市绵山镇", None),
        ("坚持项目为王", None),
        ("一、招商引资", None),
        ("签约仪式现场。 刘勇 摄", None),
        ("（晋中日报）", ("晋中日报", ())),
        ("(记者 张三)", ("记者 张三", ("张三",))),
        ("文/图 张三", ("文/图 张三", ("张三",))),
        ("本报记者 张三 李四", ("本报记者 张三 李四", ("张三", "李四"))),
        ("□本报记者 张三", ("本报记者 张三", ("张三",))),  # an ornament before it
        ("（张三/文 李四/图）", ("张三/文 李四/图", ("张三", "李四"))),
        ("（新华社记者 张三）", ("新华社记者 张三", ("张三",))),
        ("来源：人民网-山西频道", ("来源：人民网-山西频道", ())),
        ("（记者 马 力）", ("记者 马 力", ("马力",))),
        ("记者 张三 摄影报道", ("记者 张三 摄影报道", ("张三",))),
        ("编辑：张三 审核：李四", ("编辑：张三 审核：李四", ("张三", "李四"))),
        ("撰稿：晋城经开区党群工作部", ("撰稿：晋城经开区党群工作部", ())),
    ],
)
def test_whole_line_bylines_and_what_is_no_byline(line, expected):
    from qa_bot.parsing.bylines import is_whole_byline, parse_byline

    assert is_whole_byline(line) == (expected is not None)
    if expected is not None:
        byline = parse_byline(line)
        assert (byline.printed, byline.names) == expected


def test_articles_stored_before_byline_names_still_load():
    """index.py reads articles.jsonl rows with Article(**row): old rows lack byline_names,
    new ones hold a JSON list."""
    old = {"article_id": "i/1", "issue": "i", "title": "t", "text": "x", "byline": "王波"}
    assert Article(**old).byline_names == ()
    new = Article(**{**old, "byline_names": ["王波"]})
    assert new.byline_names == ("王波",)
    assert hash(new) == hash(Article(**{**old, "byline_names": ("王波",)}))


# ---------------------------------------------------------------------------------------------
# Zones (tests/fixtures/zones.txt)


@pytest.fixture(scope="module")
def zones() -> tuple[list[Article], list[SourceProblem]]:
    return load_file(FIXTURES / "zones.txt")


def test_zone_forms(zones):
    articles, _ = zones
    assert [(a.line, a.zone, a.title, a.subtitle, a.byline) for a in articles] == [
        (1, "", "园区召开季度经济运行分析会", "", "刘一"),
        (5, "长治高新技术产业开发区", "深入长治高新区调研指导工作", "", "陈二"),
        (11, "晋城经济技术开发区", "召开党工委理论学习中心组学习会", "", "林三"),
        (19, "", "左权县召开开发区建设推进会", "", "黄四"),
        (23, "沁县", "沁县开发区签约三个项目", "", "马五"),
        (29, "沁县", "沁县开发区开展安全检查", "", "马五"),
        (33, "阳泉经济技术开发区", "在转型发展中勇当先锋", "走进阳泉经济技术开发区", "杨六"),
        (47, "晋城经济技术开发区", "调研开发区项目建设", "", "杨六"),
    ]


def test_zone_problems(zones):
    assert [(p.line, p.message) for p in zones[1]] == [
        (1, "article «园区召开季度经济运行分析会»: no zone line and the text names no zone"),
        (17, "«工作动态» before a title names no place; not used as a zone"),
        (19, "article «左权县召开开发区建设推进会»: no zone line and the text names no zone"),
    ]


def test_feature_article_sections(zones):
    article = by_title(zones[0])["在转型发展中勇当先锋"]
    assert article.paragraphs == [
        "阳泉经济技术开发区坚持创新驱动，加快转型发展。",
        "一、抓项目",
        "今年以来，开发区新建项目12个。",
        "二、优服务",
        "开发区深化“放管服”改革，优化营商环境。",
    ]


@pytest.mark.parametrize(
    ("head", "lead", "zone"),
    [
        # Person's title: the zone comes from the text; verbs before the place are not captured.
        (
            "运城市委书记丁小强",
            "本刊讯 近日，丁小强深入运城经济技术开发区调研。",
            "运城经济技术开发区",
        ),
        ("运城市委书记丁小强", "本刊讯 近日，丁小强赴运城经济开发区调研。", "运城经济开发区"),
        ("副省长王某", "本刊讯 近日，王某走进大同经济技术开发区。", "大同经济技术开发区"),
        ("副省长王某", "本刊讯 近日，王某在乌鲁木齐经济技术开发区考察。", "乌鲁木齐经济技术开发区"),
        (
            "副省长王某",
            "本刊讯 近日，王某到晋中国家农业高新技术产业示范区考察。",
            "晋中国家农业高新技术产业示范区",
        ),
        ("副省长王某", "本刊讯 近日，王某考察了开发区。", ""),
        # Organisational suffixes come off a zone line; places stay as they are.
        ("祁县经济开发区纪检监察工委", "本刊讯 近日，召开会议。", "祁县经济开发区"),
        ("山西转型综合改革示范区管委会", "本刊讯 近日，召开会议。", "山西转型综合改革示范区"),
        ("长治高新技术产业开发区党工委", "本刊讯 近日，召开会议。", "长治高新技术产业开发区"),
        ("太原武宿综合保税区", "本刊讯 近日，召开会议。", "太原武宿综合保税区"),
        ("沁源县", "本刊讯 近日，召开会议。", "沁源县"),
        ("晋中市", "本刊讯 近日，召开会议。", "晋中市"),
        (
            "运城市委书记、市长丁小强",
            "本刊讯 近日，丁小强深入运城经济技术开发区。",
            "运城经济技术开发区",
        ),
    ],
)
def test_zone_resolution(head, lead, zone):
    articles, _ = parse_bulletin(f"{head}\n\n## 标题\n\n{lead}（王波）\n", "x")
    assert articles[0].zone == zone


def test_person_line_prefers_the_full_name_over_the_abbreviation_in_the_title():
    text = (
        "运城市委书记丁小强\n\n# 深入运城经开区调研\n\n"
        "本刊讯 近日，丁小强深入运城经济技术开发区调研。（王文军）\n"
    )
    articles, problems = parse_bulletin(text, "x")
    assert articles[0].zone == "运城经济技术开发区"
    assert problems == []


def test_column_headers_are_not_zones():
    text = (
        "侯马经济开发区\n## 第一篇\n本刊讯 近日，召开会议。（王波）\n"
        "开发区动态\n## 第二篇\n本刊讯 近日，召开会议。（李四）\n"
    )
    articles, problems = parse_bulletin(text, "x")
    assert [a.zone for a in articles] == ["侯马经济开发区", ""]
    assert [(p.line, p.message) for p in problems] == [
        (4, "«开发区动态» before a title names no place; not used as a zone"),
        (5, "article «第二篇»: no zone line and the text names no zone"),
    ]
    assert articles[0].text == "本刊讯 近日，召开会议。"


def test_zone_from_title_abbreviation_when_nothing_better():
    text = (
        "运城市委书记丁小强\n\n# 深入运城经开区调研\n\n本刊讯 近日，丁小强到企业调研。（王文军）\n"
    )
    articles, _ = parse_bulletin(text, "x")
    assert articles[0].zone == "运城经开区"


def test_zone_from_text_when_file_starts_without_zone_line_is_reported():
    articles, problems = parse_bulletin(
        "## 标题\n\n本刊讯 近日，侯马经济开发区召开会议。（王波）\n", "x"
    )
    assert articles[0].zone == "侯马经济开发区"
    assert [p.message for p in problems] == [
        "article «标题»: no zone line; zone «侯马经济开发区» taken from the text"
    ]


def test_traditional_fixture():
    articles, problems = load_file(FIXTURES / "traditional.txt")
    assert problems == []
    (article,) = articles
    assert article.zone == "太原經濟技術開發區"
    assert article.title == "開發區舉辦招商引資推介會"
    assert article.byline == "記者 陳強 通訊員 黃曉明"
    assert article.byline_names == ("陳強", "黃曉明")  # traditional names kept as printed
    assert article.paragraphs == [
        "本刊訊 近日，太原經濟技術開發區在深圳舉辦招商引資推介會，現場簽約項目十個，"
        "總投資一百億元。",
        "推介會上，開發區負責人介紹了園區的區位優勢、產業基礎和營商環境，吸引了眾多企業的關注。",
    ]


def test_traditional_person_line_and_subtitle():
    text = (
        "運城市委書記丁小強\n\n# 深入運城經開區調研\n\n"
        "本刊訊 近日，丁小強深入運城經濟技術開發區調研。（記者 王文軍）\n\n"
        "# 為高質量發展賦能\n\n——走進左雲經濟技術開發區\n\n建區八年，成績斐然。 呂平\n"
    )
    articles, problems = parse_bulletin(text, "x")
    assert [(a.zone, a.subtitle, a.byline_names[0]) for a in articles] == [
        ("運城經濟技術開發區", "", "王文軍"),
        ("左雲經濟技術開發區", "走進左雲經濟技術開發區", "呂平"),
    ]
    assert problems == []


# ---------------------------------------------------------------------------------------------
# Several issues' worth of layout forms (tests/fixtures/mixed-issues.txt)


@pytest.fixture(scope="module")
def mixed() -> tuple[list[Article], list[SourceProblem]]:
    return load_file(FIXTURES / "mixed-issues.txt")


def test_mixed_articles(mixed):
    articles, _ = mixed
    assert [(a.line, a.zone, a.title, " ".join(a.byline_names)) for a in articles] == [
        (4, "大同经济技术开发区", "召开项目建设推进会", "李明"),
        (16, "孝义经济开发区", "签约落地两个新材料项目", "王刚"),
        (22, "孝义经济开发区", "开展环保专项检查", ""),
        (27, "吕梁", "吕梁经济开发区举办人才招聘会", "张丽 刘洋"),
        (41, "侯马经济开发区", "召开项目建设调度会", "贺玉斌"),
        (47, "文水经济开发区", "召开项目建设调度会", "魏亚东"),
    ]


def test_mixed_paragraphs(mixed):
    articles = mixed[0]
    assert articles[0].paragraphs == [
        "本刊讯 7月3日，大同经济技术开发区召开项目建设推进会，听取了重点项目进展情况汇报。",
        "会议要求：",
        "一、倒排工期，挂图作战。",
        "二、强化保障，优化服务。",
    ]
    assert articles[1].paragraphs == [
        "本刊讯 7月5日，孝义经济开发区与两家企业签订投资协议，项目总投资15亿元，主要生产碳纤维及"
        "复合材料产品。项目达产后，预计年产值可达20亿元，新增就业岗位500余个。"
    ]
    assert articles[2].paragraphs == [
        "本刊讯 7月8日，孝义经济开发区对园区内企业开展环保专项检查，"
        "重点检查CO₂排放和废水处理情况。",
        "检查中发现问题 12项，已全部督促整改到位。",
    ]
    assert articles[3].paragraphs == [
        "本刊讯 7月10日，吕梁经济开发区举办人才招聘会，40余家企业提供岗位1200个。",
        "一是岗位种类多",
        "涵盖技术、管理、营销等多个领域。",
        "二是薪资待遇好，平均月薪较去年提高10%。",
    ]
    assert all("- 2 -" not in a.text and "\n3\n" not in a.text for a in articles)


def test_mixed_problems(mixed):
    source = str(FIXTURES / "mixed-issues.txt")
    assert mixed[1] == [
        SourceProblem(source, 1, "2 line(s) before the first title ignored"),
        SourceProblem(
            source,
            17,
            "«签约落地两个新材料项目» taken as a title (no ## marker; it precedes 本刊讯)",
        ),
        SourceProblem(source, 22, "article «开展环保专项检查»: no byline found"),
    ]


def test_same_title_twice_gets_distinct_ids(mixed):
    first, second = mixed[0][-2:]
    assert second.article_id == first.article_id + "-2"


def test_no_titles_fixture():
    articles, problems = load_file(FIXTURES / "no-titles.txt")
    (article,) = articles
    assert article.title == "关于开发区工作的几点思考"
    assert (
        article.text == "开发区是经济发展的主阵地。近年来，各开发区坚持项目为王，推动高质量发展。"
    )
    assert article.byline == "王强"
    assert article.zone == ""
    assert [p.message for p in problems] == [
        "no titles (## or #) found: the whole file is read as one article titled by its first line",
        "article «关于开发区工作的几点思考»: no zone line and the text names no zone",
    ]


def test_paragraph_joining_rules():
    text = (
        "侯马经济开发区\n## 标题\n本刊讯 近日，开发区召开会议，\n\n\n听取汇报。\n"
        "引进了Apple\nInc的项目。\n"
        "主要做法：\n一是抓项目。\n"
        "项目投资3.\n26亿元，“\n北铜”项目投产。\n"
        "（一）精心组织\n方案已制定。（王波）\n"
    )
    articles, _ = parse_bulletin(text, "x")
    assert articles[0].paragraphs == [
        "本刊讯 近日，开发区召开会议，听取汇报。",
        "引进了Apple Inc的项目。",
        "主要做法：",
        "一是抓项目。",
        "项目投资3.26亿元，“北铜”项目投产。",
        "（一）精心组织",
        "方案已制定。",
    ]


def test_markup_and_invisible_characters_in_lines():
    text = (
        "侯马经济开发区\r\n## 标\u200b题\r\n本刊讯 面积5000m<sup>2</sup>，"
        "体积3m<sup>3</sup>，排放CO<sub>2</sub>，第<sup>a</sup>项，<b>加粗</b>&amp;。\r（王波）\r\n"
    )
    articles, _ = parse_bulletin(text, "x")
    assert articles[0].title == "标题"
    assert articles[0].text == "本刊讯 面积5000m²，体积3m³，排放CO₂，第a项，加粗&。"


def test_issue_date_only_from_a_year_month_issue_name():
    text = "侯马经济开发区\n## 标题\n本刊讯 近日，召开会议。（王波）\n"
    assert parse_bulletin(text, "2023-07")[0][0].date == "2023-07"
    assert parse_bulletin(text, "bulletin_202311")[0][0].date == "2023-11"
    assert parse_bulletin(text, "issue-88")[0][0].date == ""


def test_parse_bulletin_without_source_names_the_issue_in_problems():
    articles, problems = parse_bulletin("## 标题\n\n本刊讯 近日，召开会议。\n", "2023-07")
    assert articles[0].source == ""
    assert {p.source for p in problems} == {"2023-07"}


def test_parse_bulletin_empty_text():
    assert parse_bulletin("\n \n", "x") == ([], [SourceProblem("x", 0, "no text")])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "",
                "侯马经济开发区",
                "## 标题",
                "# 题",
                "——走进左云经济技术开发区",
                "### 小节",
                "本刊讯 近日，",
                "召开会议。",
                "（王波）",
                " 吕平",
                "未完",
                "<sup>2</sup>",
                "（试行）",
                "运城市委书记丁小强",
                "\u200b",
                "工作动态",
                "3",
                "《办法（",
                "）》",
                "撰稿:",
                "\r",
            ]
        ),
        max_size=40,
    )
)
def test_parse_bulletin_never_fails_and_keeps_invariants(lines):
    articles, problems = parse_bulletin("\n".join(lines), "h")
    for article in articles:
        assert article.text and article.paragraphs == article.text.split("\n")
        assert all(p == p.strip() for p in article.paragraphs)
        assert "\u200b" not in article.text and "\r" not in article.text
    assert len({a.article_id for a in articles}) == len(articles)
    assert all(isinstance(p, SourceProblem) for p in problems)


# ---------------------------------------------------------------------------------------------
# Reading files: encodings and refusals

SMALL_PARAGRAPHS = [
    "本刊讯 6月12日，侯马经济开发区召开2023年项目建设第19次调度会。",
    "李俊胜要求，全区上下要统一思想、形成共识。",
]


@pytest.mark.parametrize("name", ["gb18030.txt", "utf8-bom-crlf.txt", "utf16.txt"])
def test_encodings_decode_to_the_same_article(name):
    articles, _ = load_file(FIXTURES / name)
    (article,) = articles
    assert (article.zone, article.title, article.byline) == (
        "侯马经济开发区",
        "召开项目建设调度会",
        "贺玉斌",
    )
    assert article.paragraphs == SMALL_PARAGRAPHS


def test_gb18030_is_decoded_with_a_warning():
    text, problems = read_text(FIXTURES / "gb18030.txt")
    assert text.startswith("侯马经济开发区\n")
    assert [(p.line, "GB18030" in p.message) for p in problems] == [(1, True)]


def test_bom_and_crlf_are_removed():
    text, problems = read_text(FIXTURES / "utf8-bom-crlf.txt")
    assert problems == []
    assert text.startswith("侯马经济开发区\n\n## ")
    assert "\ufeff" not in text and "\r" not in text


def test_zero_width_and_stray_controls_are_removed(tmp_path):
    path = tmp_path / "z.txt"
    path.write_bytes("侯马\u200b经济\ufeff开发区\u2028第二行\x0c第三行\x07。\r".encode())
    text, problems = read_text(path)
    assert text == "侯马经济开发区\n第二行\n第三行。\n"
    assert [p.message for p in problems] == ["removed 1 stray control character(s)"]


@pytest.mark.parametrize(
    ("name", "data", "line", "needle"),
    [
        ("empty.txt", None, 0, "empty file"),
        ("blank.txt", None, 0, "empty file"),
        ("binary.bin", None, 1, "plain text (UTF-8)"),
        ("page.txt", (FIXTURES / "page.html").read_bytes(), 0, "name it .html"),
        ("doc.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", 0, "PDF"),
        ("doc.docx", b"PK\x03\x04\x14\x00\x06\x00", 0, ".docx"),
        ("latin.txt", b"ok\n\xff\xfe\xff\xfe garbage \xff", 2, "neither UTF-8 nor GB18030"),
        ("controls.txt", bytes(range(1, 9)) * 40, 0, "does not read as text"),
        ("fragment.txt", "<p>本刊讯</p>\n<p>一</p><p>二</p><div>三</div><br>".encode(), 0, "HTML"),
        ("missing.txt", "absent", 0, "cannot read"),
    ],
)
def test_unusable_files_are_refused_with_advice(tmp_path, name, data, line, needle):
    path = FIXTURES / name
    if data == "absent":
        path = tmp_path / name
    elif data is not None:
        path = tmp_path / name
        path.write_bytes(data)
    with pytest.raises(InputError) as caught:
        load_file(path)
    problem = caught.value.problem
    assert problem.source == str(path)
    assert problem.line == line
    assert needle in problem.message
    assert str(caught.value) == str(problem)
    assert str(caught.value).startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_bulletin_with_sup_markup_is_not_taken_for_html(tmp_path):
    path = tmp_path / "sup.txt"
    path.write_text(
        "侯马经济开发区\n## 标题\n本刊讯 面积为71654m<sup>2</sup>。（王波）\n", encoding="utf-8"
    )
    articles, _ = load_file(path)
    assert articles[0].text == "本刊讯 面积为71654m²。"


def test_bulletin_without_articles_is_an_input_error(tmp_path):
    path = tmp_path / "only-title.txt"
    path.write_text("## 只有标题\n\n（王波）\n", encoding="utf-8")
    with pytest.raises(InputError, match="no articles found"):
        load_file(path)


def test_markdown_and_unknown_extensions_are_bulletins(tmp_path):
    for name in ("issue.md", "issue.bulletin"):
        shutil.copy(SEED, tmp_path / name)
        articles, _ = load_file(tmp_path / name)
        assert len(articles) == len(SEED_EXPECTED)
        assert articles[0].issue == "issue"


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_good_file():
    articles, problems = load_file(FIXTURES / "articles.jsonl")
    assert problems == []
    assert [
        (a.article_id, a.issue, a.title, a.zone, a.byline, a.date, a.line) for a in articles
    ] == [
        ("a1", "articles", "召开项目建设推进会", "大同经济技术开发区", "李明", "2023-07-03", 1),
        ("a2", "articles", "", "", "", "", 3),
        ("3", "2023-07", "签约两个项目", "", "", "", 4),
    ]
    assert (
        articles[0].text
        == "本刊讯 7月3日，大同经济技术开发区召开项目建设推进会。\n会议要求倒排工期。"
    )
    assert articles[2].text == "本刊讯 孝义经济开发区签约两个项目。\n项目总投资15亿元。"
    assert articles[2].subtitle == "新材料产业再添新动能"
    assert all(a.source == str(FIXTURES / "articles.jsonl") for a in articles)


def test_jsonl_bad_lines_are_reported_and_skipped():
    articles, problems = load_file(FIXTURES / "bad.jsonl")
    assert [(a.article_id, a.title, a.zone) for a in articles] == [
        ("b1", "第一篇", ""),
        ("b6", "第六篇", ""),
    ]
    assert [p.line for p in problems] == [2, 3, 4, 5, 6, 7, 9]
    messages = [p.message for p in problems]
    assert messages[0].startswith("invalid JSON: ")
    assert messages[1:] == [
        "missing field(s) text; line skipped",
        "not a JSON object; line skipped",
        "duplicate id 'b1' (first on line 1); skipped",
        "empty text; line skipped",
        "field title must be a string; line skipped",
        "field zone must be a string; ignored",
    ]


def test_parse_jsonl_directly_and_issue_default():
    text = '\n{"id": "x", "title": "t", "text": "正文"}\n\n'
    articles, problems = parse_jsonl(text, "2023-09")
    assert problems == []
    assert (articles[0].issue, articles[0].line, articles[0].source) == ("2023-09", 2, "")


def test_jsonl_without_any_good_line_is_an_input_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"no articles found; first problem: .*:1: missing field"):
        load_file(path)


@pytest.mark.parametrize("suffix", [".json-lines", ".ndjson", ".json"])
def test_other_jsonl_extensions(tmp_path, suffix):
    path = tmp_path / f"rows{suffix}"
    path.write_text('{"id": "x", "title": "t", "text": "正文"}\n', encoding="utf-8")
    articles, _ = load_file(path)
    assert [a.article_id for a in articles] == ["x"]


def test_json_array_file(tmp_path):
    path = tmp_path / "rows.json"
    rows = [{"id": "x", "title": "t", "text": "正文"}, {"id": "x", "title": "u", "text": "又"}]
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    articles, problems = load_file(path)
    assert [a.article_id for a in articles] == ["x"]
    assert [p.message for p in problems] == ["item 2: duplicate id 'x' (first on line 1); skipped"]


# ---------------------------------------------------------------------------------------------
# Performance: linear in the input


def _big_issue(copies: int) -> str:
    return "\n\n".join([SEED.read_text(encoding="utf-8")] * copies)


def test_five_megabytes_parse_quickly():
    text = _big_issue(250)
    start = time.perf_counter()
    articles, problems = parse_bulletin(text, "big")
    elapsed = time.perf_counter() - start
    assert len(articles) == 250 * len(SEED_EXPECTED)
    assert problems == []
    assert elapsed < 5, f"{elapsed:.1f}s for {len(text) / 1e6:.1f}M characters"


@pytest.mark.slow
def test_fifty_megabytes_read_and_parse_in_seconds(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text(_big_issue(2500), encoding="utf-8")
    assert path.stat().st_size > 45_000_000
    start = time.perf_counter()
    articles, _ = load_file(path)
    elapsed = time.perf_counter() - start
    assert len(articles) == 25_000
    assert elapsed < 20, f"{elapsed:.1f}s"
