"""Reading input files and parsing bulletin issues into articles.

A bulletin issue (plain text, Markdown-ish) is a sequence of articles, each laid out as::

    侯马经济开发区                      ← zone line (optional: else the section above applies)
    ## 召开2023年项目建设第19次调度会     ← title (## or #)
    ——走进左云经济技术开发区              ← subtitle (optional, only right after the title)
    本刊讯 6月12日，……                   ← lead
    ### 小标题                           ← section heading inside the article (optional)
    ……（贺玉斌）                         ← paragraphs, byline at the end

Print artifacts are repaired: paragraphs split mid-sentence are joined, ``<sup>`` becomes a
superscript, bylines (also repeated ones) are taken out of the text. Traditional characters
are kept as printed; pattern matching runs on a simplified *shadow* of short strings (same
length, so offsets carry over).

Public API: :class:`InputError`, :func:`read_text`, :func:`parse_bulletin`,
:func:`parse_jsonl`, :func:`load_file`.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import html
import itertools
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from qa_bot.records import Article, SourceProblem

__all__ = ["InputError", "load_file", "parse_bulletin", "parse_jsonl", "read_text"]

_LOG = logging.getLogger(__name__)


class InputError(Exception):
    """An input that cannot be used at all; ``str()`` is ``"file:line: message"``."""

    def __init__(self, problem: SourceProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


# ---------------------------------------------------------------------------------------------
# Character classes and patterns (all compiled once; zone/byline patterns are in simplified
# Chinese and run on the shadow text, see _shadow).


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_RE = re.compile(f"[{_HAN}]")
# A paragraph ending in one of these is complete; otherwise the next line continues it.
# The colon is included because a paragraph introducing a list ends with one.
_PARA_END = frozenset("。！？；…!?;：:”’」』）)》】〕]\"'")
# What may precede a byline in brackets at the end of a paragraph.
_SENTENCE_END = frozenset("。！？；…!?;”’」』）)】")
_SENTENCE_END_LIST = tuple(_SENTENCE_END)

_TITLE_RE = re.compile(r"^(#{1,2})(?!#)[ \t\u3000]*(.*?)[ \t\u3000#]*$")
_SECTION_RE = re.compile(r"^#{3,6}(?!#)[ \t\u3000]*(.*?)[ \t\u3000#]*$")
_SUBTITLE_RE = re.compile(r"^[—–\-－─―]{1,4}[ \t\u3000]*(\S.*)$")
_LEAD_RE = re.compile(r"^本[刊报報][讯訊]")
_LEAD_BYLINE_RE = re.compile(
    r"^(本[刊报報][讯訊])[ \t\u3000]*[（(]([^（()）]{1,40})[）)][ \t\u3000]*"
)
# Page numbers left by PDF export: "3", "- 3 -", "— 12 —", "第3页".
_PAGE_NUMBER_RE = re.compile(r"^[-—–－·\s]*(?:第\s*)?\d{1,3}\s*页?[-—–－·\s]*$")
# A line starting a numbered item that has no punctuation at all is a heading, not a fragment.
_ENUM_HEADING_RE = re.compile(
    r"^(?:[一二三四五六七八九十]+[、是]|[（(][一二三四五六七八九十\d]+[）)]|\d+[、．]|\d+\.(?!\d)"
    r"|第[一二三四五六七八九十]+[，、是])"
)
_HEADING_PUNCT_RE = re.compile(r"[。，；！？：、,;!?:]")
# A zone line may list titles with 、 (运城市委书记、市长丁小强) but has no sentence in it.
_ZONE_LINE_PUNCT_RE = re.compile(r"[。，；！？：,;!?:]")

_SUP_RE = re.compile(r"<(sup|sub)>\s*([^<]{0,12}?)\s*</\1>", re.IGNORECASE)
_INLINE_TAG_RE = re.compile(r"</?(?:b|i|u|em|strong|span|font|small|big|br)\b[^>]*>", re.IGNORECASE)
_SUPERSCRIPT = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_SUBSCRIPT = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")

# Zone names. Content search (title/subtitle/lead) accepts the narrower set, ranked: full
# names first, then X开发区/X示范区, then abbreviations.
_ZONE_FULL = ("高新技术产业开发区", "经济技术开发区", "高新技术开发区", "经济开发区", "综合保税区")
_ZONE_PLAIN = ("开发区", "示范区")
_ZONE_ABBR = ("经开区", "高新区", "综改区")
_ZONE_RANK = {s: 0 for s in _ZONE_FULL} | {s: 1 for s in _ZONE_PLAIN} | {s: 2 for s in _ZONE_ABBR}
_CONTENT_ZONE_RE = re.compile("|".join(_ZONE_FULL + _ZONE_PLAIN + _ZONE_ABBR))
# On a zone line anything park-like counts (the line is known to name a zone or section).
_LINE_ZONE_RE = re.compile(
    "|".join(
        (*_ZONE_FULL, *_ZONE_PLAIN, *_ZONE_ABBR, "产业园区", "工业园区", "园区", "新区", "产业园")
    )
)
_PLACE_SUFFIX_RE = re.compile(r"[省市县区旗镇乡]$")
_PERSON_TITLE_RE = re.compile(
    r"书记|市长|县长|区长|省长|镇长|乡长|主任|局长|厅长|部长|主席|常委|董事长|总经理|秘书长|巡视员|调研员"
)
_PERSON_PLACE_RE = re.compile(r"^(.{2,4}?)[省市县区](?:委|政府|人大|政协|长)")

# Shanxi's cities, counties and districts: where a zone name's place part starts. Generic
# district names (城区, 矿区, 郊区) are left out on purpose.
_GAZETTEER = _wordset(
    """
    山西 山西省 太原 大同 阳泉 长治 晋城 朔州 晋中 运城 忻州 临汾 吕梁
    小店 迎泽 杏花岭 尖草坪 万柏林 晋源 清徐 阳曲 娄烦 古交
    平城 云冈 新荣 云州 阳高 天镇 广灵 灵丘 浑源 左云 平定 盂县
    潞州 上党 屯留 潞城 襄垣 平顺 黎城 壶关 长子 武乡 沁县 沁源 沁水 阳城 陵川 泽州 高平
    朔城 平鲁 山阴 应县 右玉 怀仁 榆次 太谷 榆社 左权 和顺 昔阳 寿阳 祁县 平遥 灵石 介休
    盐湖 临猗 万荣 闻喜 稷山 新绛 绛县 垣曲 夏县 平陆 芮城 永济 河津
    忻府 定襄 五台 代县 繁峙 宁武 静乐 神池 五寨 岢岚 河曲 保德 偏关 原平
    尧都 曲沃 翼城 襄汾 洪洞 古县 安泽 浮山 吉县 乡宁 大宁 隰县 永和 蒲县 汾西 侯马 霍州
    离石 文水 交城 兴县 临县 柳林 石楼 岚县 方山 中阳 交口 孝义 汾阳
    """
)
_GAZ_MAX = max(map(len, _GAZETTEER))
# Words that end a place name when walking back from a zone suffix (verbs are caught by jieba).
_PLACE_STOP = _wordset(
    "深入 走进 走入 来到 前往 赴 到 在 于 对 与 和 及 同 是 的 了 将 把 被 向 从 为 由 "
    "各 该 本 此 全 全省 全市 全县 全区 省级 国家级 市级 县级 多个 重点"
)
_JIEBA_STOP_FLAGS = ("v", "p", "c", "u", "d", "r", "m", "q", "t", "f", "y", "e", "o", "x", "w")

# Bylines.
_ROLES = _wordset(
    "撰稿 撰文 文 图文 图 摄影 摄 记者 本刊记者 特约记者 见习记者 通讯员 特约通讯员 "
    "供稿 作者 编辑 责任编辑 责编 审核 校对 文字"
)
_ROLES_LONGEST_FIRST = sorted((r for r in _ROLES if len(r) > 1), key=len, reverse=True)
_BYLINE_SPLIT_RE = re.compile(r"[\s\u3000、，,；;/／:：|｜]+")
_NAME_RE = re.compile(f"[{_HAN}]{{2,4}}|[{_HAN}]{{1,6}}[·•・][{_HAN}]{{1,8}}")
# Bracketed words that look like names by shape but are not people.
_NOT_NAMES = _wordset(
    "试行 暂行 草案 修订 修订稿 修正 征求意见稿 节选 摘编 摘要 原创 转载 来源 稿源 资料 "
    "资料图 资料图片 图片 配图 供图 完 全文 全文完 待续 未完待续 续完 下同 同上 略 附件 编者按 "
    "试点 暂定"
)
# Common surnames (first character of a name), for bylines whose position is not conclusive.
# Characters that mostly start ordinary words (和, 来, 都, 由, 以…) are left out on purpose.
_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛"
    "郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦"
    "俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕"
    "屈饶解牟艾尤穆卓吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂佟臧闵苟邬边卞姬"
    "师仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩佘池查麻苑迟邝封谈匡鞠惠荆冀郁胥班储栗燕楚鄢劳谌奚"
    "皮粟冼蔺楼满闻厉伊仝郜阚权帅屠豆朴盖练廉禹井祖漆巴丰支卿狄计索宣晋芮扈晁邸雍辜裘亓邰赫"
)
_COMPOUND_SURNAMES = _wordset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 令狐 夏侯 端木 南宫 独孤 轩辕"
)
_NOT_NAME_END = frozenset("报网社台局委办会区县市省部处所站院厅司室组队科")

_ZERO_WIDTH_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LINE_BREAKS_RE = re.compile("[\f\v\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_ODD_CHAR_RE = re.compile("[\x80-\x9f\ue000-\uf8ff]")
_HTML_START_RE = re.compile(
    r"<(?:!doctype\s+html|html|\?xml|head|body|meta|div|p|table|h[1-6]|article|section)\b",
    re.IGNORECASE,
)
_HTML_TAG_RE = re.compile(
    r"</?(?:html|head|body|div|p|br|table|tr|td|span|h[1-6]|meta|script|style|li|ul|a)\b[^>]*>",
    re.IGNORECASE,
)
_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (a .docx/.xlsx document?)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.doc/.xls)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip archive"),
)
_EXPORT_HINT = "export or save it as plain text (UTF-8) and ingest that file"

_JSONL_SUFFIXES = frozenset({".jsonl", ".json-lines", ".jsonlines", ".ndjson"})


# ---------------------------------------------------------------------------------------------
# Reading files


def read_text(path: Path) -> tuple[str, list[SourceProblem]]:
    """Read a text file whatever its encoding; refuse what is not text, saying what to do."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(SourceProblem(source, 0, f"cannot read: {exc.strerror or exc}")) from exc
    text, problems = _decode(data, source)
    return _normalise(text, source, problems), problems


def _decode(data: bytes, source: str) -> tuple[str, list[SourceProblem]]:
    problems: list[SourceProblem] = []
    if not data.strip():
        raise InputError(SourceProblem(source, 0, "empty file: no text to ingest"))
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise InputError(
                SourceProblem(source, 0, f"not a text file: looks like {what}; {_EXPORT_HINT}")
            )
    # UTF-32 before UTF-16: the UTF-32-LE byte-order mark starts with the UTF-16-LE one.
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    for bom, encoding in boms:
        if data.startswith(bom):
            try:
                return data.decode(encoding), problems
            except UnicodeDecodeError as exc:
                raise InputError(
                    SourceProblem(
                        source,
                        _line_of_offset(data, exc.start),
                        f"starts with a {encoding.upper()} byte-order mark but is not valid "
                        f"{encoding.upper()}; {_EXPORT_HINT}",
                    )
                ) from exc
    if b"\x00" in data:
        raise InputError(
            SourceProblem(
                source,
                _line_of_offset(data, data.index(b"\x00")),
                "contains NUL bytes: a binary file, or UTF-16/UTF-32 without a byte-order mark; "
                + _EXPORT_HINT,
            )
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = _line_of_offset(data, exc.start)
    else:
        return _plausible_or_raise(text, source), problems
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        message = "neither UTF-8 nor GB18030 text (binary, or another encoding); " + _EXPORT_HINT
        raise InputError(SourceProblem(source, _line_of_offset(data, exc.start), message)) from exc
    problems.append(
        SourceProblem(
            source,
            bad_line,
            "not UTF-8 (first bad byte on this line); decoded as GB18030/GBK — "
            "please re-save the file as UTF-8",
        )
    )
    return _plausible_or_raise(text, source), problems


def _plausible_or_raise(text: str, source: str) -> str:
    """Binary that happens to decode shows many control or private-use characters."""
    sample = text[:200_000]
    odd = len(_CONTROL_RE.findall(sample)) + len(_ODD_CHAR_RE.findall(sample))
    if odd > max(2, len(sample) // 100):
        message = f"does not read as text (binary?); {_EXPORT_HINT}"
        raise InputError(SourceProblem(source, 0, message))
    return text


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _normalise(text: str, source: str, problems: list[SourceProblem]) -> str:
    """Newlines to \\n, zero-width and BOM characters and stray control characters removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _LINE_BREAKS_RE.sub("\n", text)
    text = _ZERO_WIDTH_RE.sub("", text)
    if _CONTROL_RE.search(text):
        count = len(_CONTROL_RE.findall(text))
        text = _CONTROL_RE.sub("", text)
        problems.append(SourceProblem(source, 0, f"removed {count} stray control character(s)"))
    if not text.strip():
        raise InputError(SourceProblem(source, 0, "empty file: only whitespace"))
    if _looks_like_html(text):
        raise InputError(
            SourceProblem(
                source,
                0,
                "looks like HTML, not plain text: export the page as plain text "
                "(UTF-8) and ingest that file",
            )
        )
    return text


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:2000]
    if head.startswith(("{", "[")):  # JSON: markup inside strings is data
        return False
    if _HTML_START_RE.match(head):
        return True
    # The bulletin itself may contain <sup>; structural tags in numbers mean a web page.
    return sum(1 for _ in itertools.islice(_HTML_TAG_RE.finditer(text), 5)) >= 5


# ---------------------------------------------------------------------------------------------
# Traditional-character shadow for matching


@functools.cache
def _t2s_table() -> dict[int, str]:
    """Traditional→simplified for the characters our patterns use (one to one)."""
    chars = set("".join(_GAZETTEER) + "".join(_ROLES) + "".join(_NOT_NAMES))
    chars |= set(_LINE_ZONE_RE.pattern + _PERSON_TITLE_RE.pattern + "".join(_PLACE_STOP))
    chars |= set(_PERSON_PLACE_RE.pattern + "".join(_NOT_NAME_END) + "省市县区旗镇乡")
    chars |= _SURNAMES | set("".join(_COMPOUND_SURNAMES))
    simplified = sorted(c for c in chars if _HAN_RE.match(c))
    try:
        import opencc
    except ImportError:  # matching traditional text degrades, simplified still works
        _LOG.warning("opencc not installed: zone names in traditional characters not recognised")
        return {}
    converted = opencc.OpenCC("s2t").convert("\n".join(simplified)).split("\n")
    return {ord(t): s for s, t in zip(simplified, converted, strict=True) if len(t) == 1 and t != s}


def _shadow(text: str) -> str:
    return text.translate(_t2s_table())


@functools.cache
def _posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter goes to stderr
    return jieba.posseg


def _looks_like_name(name: str) -> bool:
    """For bylines that position alone does not make certain (bare, or glued to the text):
    a common surname, or jieba's guess (pen names like 晓晓妹)."""
    shadow = _shadow(name)
    if shadow[0] in _SURNAMES or shadow[:2] in _COMPOUND_SURNAMES or "·" in name:
        return True
    tokens = _posseg().lcut(shadow)
    return bool(tokens) and tokens[0].flag.startswith("nr")


# ---------------------------------------------------------------------------------------------
# Bylines


def _parse_names(content: str) -> tuple[list[str], bool] | None:
    """Names in a byline (roles like 记者/撰稿: allowed), or None if it is not only names."""
    names: list[str] = []
    had_role = False
    for token in _BYLINE_SPLIT_RE.split(content.strip()):
        if not token:
            continue
        shadow = _shadow(token)
        if shadow in _ROLES:
            had_role = True
            continue
        # A multi-character role may be glued to the name: 通讯员张三. Single-character roles
        # (文, 图, 摄) only count when separated, since 文 is also a surname.
        for role in _ROLES_LONGEST_FIRST:
            if shadow.startswith(role) and _valid_name(token[len(role) :]):
                had_role = True
                token = token[len(role) :]
                break
        if not _valid_name(token):
            return None
        if token not in names:
            names.append(token)
    return (names, had_role) if names else None


def _valid_name(token: str) -> bool:
    if not _NAME_RE.fullmatch(token):
        return False
    shadow = _shadow(token)
    return shadow not in _NOT_NAMES and shadow[-1] not in _NOT_NAME_END


def _is_whole_byline(line: str) -> bool:
    """A line that is nothing but a byline: （王波）, 撰稿：冯慧媛, 通讯员 张三 李四."""
    text = line.strip()
    if text[:1] in "（(" and text[-1:] in "）)":
        return _parse_names(text[1:-1]) is not None
    parsed = _parse_names(text)
    return parsed is not None and (parsed[1] or all(map(_looks_like_name, parsed[0])))


def _trailing_bracket_byline(para: str, is_last: bool) -> tuple[str, list[str]] | None:
    """(paragraph without it, names) when the paragraph ends with a byline in brackets."""
    text = para.rstrip()
    if text[-1:] not in "）)":
        return None
    start = max(text.rfind("（"), text.rfind("("))
    if start < 0 or len(text) - start > 48:
        return None
    parsed = _parse_names(text[start + 1 : -1])
    if parsed is None:
        return None
    if text.count("《", 0, start) > text.count("》", 0, start):  # 《……办法（试行）》
        return None
    names, had_role = parsed
    before = text[:start]
    # "…办法（试行）" vs "…发展（王波）" with the full stop missing: only trust the latter at the
    # end of the article and when it really looks like people.
    glued = bool(before) and not before[-1].isspace() and before[-1] not in _SENTENCE_END
    if glued and not (is_last and (had_role or all(map(_looks_like_name, names)))):
        return None
    return before.rstrip(), names


def _trailing_bare_byline(para: str) -> tuple[str, list[str]] | None:
    """`…迈上新的台阶。 吕平`: names after whitespace following the last sentence."""
    text = para.rstrip()
    cut = max(text.rfind(c) for c in _SENTENCE_END_LIST)
    tail = text[cut + 1 :]
    if cut < 0 or not tail[:1].isspace() or len(tail) > 40:
        return None
    parsed = _parse_names(tail)
    if parsed is None or not (parsed[1] or all(map(_looks_like_name, parsed[0]))):
        return None  # `。 特此通知` is no byline
    return text[: cut + 1], parsed[0]


def _extract_byline(paras: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[str]]:
    """Remove every byline from the paragraphs; return them and the names, each once."""
    names: list[str] = []
    out: list[tuple[int, str]] = []
    last = len(paras) - 1
    for index, (lineno, para) in enumerate(paras):
        is_last = index == last
        if index == 0 and (match := _LEAD_BYLINE_RE.match(para)):
            parsed = _parse_names(match.group(2))
            if parsed is not None:
                names.extend(n for n in parsed[0] if n not in names)
                para = f"{match.group(1)} {para[match.end() :]}".rstrip()
        found = _trailing_bracket_byline(para, is_last)
        if found is not None:
            para, found_names = found
            names.extend(n for n in found_names if n not in names)
        elif is_last:
            if _is_whole_byline(para):
                parsed = _parse_names(para.strip().strip("（()）"))
                if parsed is not None:
                    names.extend(n for n in parsed[0] if n not in names)
                    para = ""
            elif (bare := _trailing_bare_byline(para)) is not None:
                para, found_names = bare
                names.extend(n for n in found_names if n not in names)
        if para.strip():
            out.append((lineno, para))
    return out, names


# ---------------------------------------------------------------------------------------------
# Zones


def _zone_from_line(line: str) -> str:
    """`祁县经济开发区纪检监察工委` → `祁县经济开发区`; `沁源县` stays as is."""
    matches = list(_LINE_ZONE_RE.finditer(_shadow(line)))
    if matches and line[matches[-1].end() :].strip():
        return line[: matches[-1].end()].strip()
    return line.strip()


def _is_person_line(line: str) -> bool:
    return bool(_PERSON_TITLE_RE.search(_shadow(line)))


def _place_hint(line: str) -> str:
    """The place a person's title names: `运城市委书记丁小强` → `运城`."""
    shadow = _shadow(line)
    for length in range(min(_GAZ_MAX, len(shadow)), 1, -1):
        if shadow[:length] in _GAZETTEER:
            return shadow[:length]
    match = _PERSON_PLACE_RE.match(shadow)
    return match.group(1) if match else ""


def _has_place_evidence(line: str) -> bool:
    shadow = _shadow(line)
    if match := _LINE_ZONE_RE.search(shadow):
        return match.start() >= 2  # 侯马开发区, not the column header 开发区动态
    return bool(
        (len(shadow) >= 2 and _PLACE_SUFFIX_RE.search(shadow))
        or any(shadow[i : i + n] in _GAZETTEER for n in (2, 3) for i in range(len(shadow)))
    )


def _place_before(shadow: str, start: int, hint: str) -> str:
    """The place name ending at `start` (where a zone suffix begins), or ""."""
    run_start = start
    while run_start > 0 and start - run_start < 16 and _HAN_RE.match(shadow[run_start - 1]):
        run_start -= 1
    run = shadow[run_start:start]
    if not run:
        return ""
    if hint:
        for suffix in ("", "市", "县", "区"):
            if run.endswith(hint + suffix):
                return hint + suffix
    for length in range(min(_GAZ_MAX + 1, len(run)), 1, -1):
        tail = run[-length:]
        if tail in _GAZETTEER or (tail[-1] in "市县区" and tail[:-1] in _GAZETTEER):
            rest = run[:-length]
            for prefix in ("山西省", "山西"):
                if rest.endswith(prefix) and tail not in ("山西", "山西省"):
                    return prefix + tail
            return tail
    # Not a Shanxi place we know: let jieba find where the name starts (深入/赴/在 stop it).
    taken: list[str] = []
    for token in reversed(_posseg().lcut(run)):
        flag = token.flag
        if token.word in _PLACE_STOP or (flag.startswith(_JIEBA_STOP_FLAGS) and flag != "vn"):
            break
        taken.append(token.word)
        if sum(map(len, taken)) >= 14:
            break
    place = "".join(reversed(taken))
    return place if len(place) >= 2 else ""


def _zones_in(text: str, hint: str) -> list[tuple[int, str]]:
    """(rank, zone name as printed) for each zone named in `text`."""
    shadow = _shadow(text)
    found = []
    for match in _CONTENT_ZONE_RE.finditer(shadow):
        place = _place_before(shadow, match.start(), hint)
        if place:
            rank = _ZONE_RANK[match.group()] + (0 if not hint or place.startswith(hint) else 3)
            found.append((rank, text[match.start() - len(place) : match.end()]))
    return found


def _zone_from_content(texts: list[str], hint: str = "") -> str:
    """The best zone name in these texts (earlier texts win ties): full names before short."""
    best: tuple[int, int, str] | None = None
    for order, text in enumerate(texts):
        for rank, name in _zones_in(text[:300], hint):
            if best is None or (rank, order) < best[:2]:
                best = (rank, order, name)
    return best[2] if best else ""


# ---------------------------------------------------------------------------------------------
# Bulletin parsing

_TEXT, _TITLE, _SECTION, _SUBTITLE, _ZONE, _OTHER = range(6)


@dataclass
class _Draft:
    title: str
    title_line: int
    own_zone: tuple[int, str] | None
    new_section: bool = False  # a column header (工作动态) came before it: the zone above ends
    subtitle: str = ""
    body: list[tuple[int, str, bool]] = field(default_factory=list)  # (line, text, is_heading)


def _clean_line(raw: str) -> str:
    line = raw.strip()
    if not line:
        return ""
    if "<" in line:
        line = _SUP_RE.sub(_script_digits, line)
        line = _INLINE_TAG_RE.sub("", line).strip()
    if "&" in line:
        line = html.unescape(line).strip()
    if "\xa0" in line:  # from web copies and &nbsp;: a plain space reads the same
        line = line.replace("\xa0", " ")
    if len(line) <= 12 and _PAGE_NUMBER_RE.match(line):
        return ""
    return line


def _script_digits(match: re.Match[str]) -> str:
    content = match.group(2)
    table = _SUPERSCRIPT if match.group(1).lower() == "sup" else _SUBSCRIPT
    converted = content.translate(table)
    # Only when every character has a super/subscript form; else the plain text reads best.
    return converted if all(a != b for a, b in zip(content, converted, strict=True)) else content


def _ends_paragraph(text: str) -> bool:
    return text[-1] in _PARA_END


def _is_enum_heading(text: str) -> bool:
    return (
        len(text) <= 40
        and bool(_ENUM_HEADING_RE.match(text))
        and not _HEADING_PUNCT_RE.search(text)
    )


def _join_paragraphs(body: list[tuple[int, str, bool]]) -> list[tuple[int, str]]:
    """Rejoin paragraphs split mid-sentence: a line not ending a sentence runs on."""
    paras: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0

    def flush() -> None:
        if parts:
            paras.append((start, "".join(parts)))
            parts.clear()

    for lineno, text, is_heading in body:
        if is_heading:
            flush()
            paras.append((lineno, text))
            continue
        if parts and not (
            _ends_paragraph(parts[-1])
            or _LEAD_RE.match(text)
            or (len(parts) == 1 and _is_enum_heading(parts[0]))
        ):
            if (
                parts[-1][-1].isascii()
                and parts[-1][-1].isalpha()
                and text[0].isascii()
                and (text[0].isalpha())
            ):
                parts.append(" ")  # "Apple" + "Inc": Latin words keep their space
            parts.append(text)
            continue
        flush()
        parts.append(text)
        start = lineno
    flush()
    return paras


def _has_zone_line_shape(text: str) -> bool:
    """Short, without sentence punctuation, not a lead (the caller checks a title follows)."""
    return len(text) <= 40 and not _ZONE_LINE_PUNCT_RE.search(text) and not _LEAD_RE.match(text)


def _could_be_untagged_title(items: list[tuple[int, str]], kinds: list[int], i: int) -> bool:
    text = items[i][1]
    if len(text) > 60 or "。" in text or _ends_paragraph(text) or _LEAD_RE.match(text):
        return False
    if _is_whole_byline(text):
        return False
    if i == 0:
        return True
    prev_kind, prev = kinds[i - 1], items[i - 1][1]
    if prev_kind in (_TITLE, _SUBTITLE):
        return False
    # An unfinished long paragraph before it means this line is that paragraph's end.
    return prev_kind != _TEXT or _ends_paragraph(prev) or len(prev) <= 40


def _classify(
    items: list[tuple[int, str]], source: str, problems: list[SourceProblem]
) -> list[int]:
    kinds = []
    for _, text in items:
        if _SECTION_RE.match(text):
            kinds.append(_SECTION)
        elif (m := _TITLE_RE.match(text)) and m.group(2):
            kinds.append(_TITLE)
        else:
            kinds.append(_TEXT)
    n = len(items)
    for i in range(n - 1):
        nxt = items[i + 1][1]
        if (
            kinds[i] == _TITLE
            and kinds[i + 1] == _TEXT
            and len(nxt) <= 80
            and _SUBTITLE_RE.match(nxt)
        ):
            kinds[i + 1] = _SUBTITLE
    for i in range(n - 1):
        before_lead = kinds[i + 1] == _TEXT and _LEAD_RE.match(items[i + 1][1])
        if kinds[i] == _TEXT and before_lead and _could_be_untagged_title(items, kinds, i):
            kinds[i] = _TITLE
            message = f"«{items[i][1]}» taken as a title (no ## marker; it precedes 本刊讯)"
            problems.append(SourceProblem(source, items[i][0], message))
    for i in range(n - 1):
        if kinds[i] == _TEXT and kinds[i + 1] == _TITLE and _has_zone_line_shape(items[i][1]):
            text = items[i][1]
            if _is_person_line(text) or _has_place_evidence(text):
                kinds[i] = _ZONE
            elif _is_whole_byline(text):
                pass  # a byline on its own line: it ends the previous article
            else:
                kinds[i] = _OTHER  # a column header such as 工作动态: no zone
                problems.append(
                    SourceProblem(
                        source,
                        items[i][0],
                        f"«{text}» before a title names no place; not used as a zone",
                    )
                )
    return kinds


def _title_text(text: str) -> str:
    match = _TITLE_RE.match(text)
    return match.group(2) if match and match.group(2) else text


def _article_id(issue: str, title: str, seen: Counter[str]) -> str:
    digest = hashlib.sha256(re.sub(r"\s+", "", title).encode("utf-8")).hexdigest()[:8]
    base = f"{issue}/{digest}"
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def _issue_date(issue: str) -> str:
    match = re.search(r"((?:19|20)\d\d)[-_.年]?(0[1-9]|1[0-2])(?!\d)", issue)
    return f"{match.group(1)}-{match.group(2)}" if match else ""


def parse_bulletin(
    text: str, issue: str, source: str = ""
) -> tuple[list[Article], list[SourceProblem]]:
    """Split a bulletin issue into articles; problems are warnings, never fatal."""
    where = source or issue
    problems: list[SourceProblem] = []
    text = _ZERO_WIDTH_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    items = [
        (i, line) for i, raw in enumerate(text.split("\n"), start=1) if (line := _clean_line(raw))
    ]
    if not items:
        return [], [SourceProblem(where, 0, "no text")]
    kinds = _classify(items, where, problems)

    drafts: list[_Draft] = []
    preamble: list[int] = []
    pending_zone: tuple[int, str] | None = None
    column_header = False
    if _TITLE not in kinds:
        lineno, first = items[0]
        problems.append(
            SourceProblem(
                where,
                lineno,
                "no titles (## or #) found: the whole file "
                "is read as one article titled by its first line",
            )
        )
        drafts.append(_Draft(_title_text(first), lineno, None))
        items, kinds = items[1:], kinds[1:]
    for (lineno, line), kind in zip(items, kinds, strict=True):
        if kind == _ZONE:
            pending_zone = (lineno, line)
        elif kind == _TITLE:
            drafts.append(_Draft(_title_text(line), lineno, pending_zone, column_header))
            pending_zone, column_header = None, False
        elif kind == _OTHER:
            column_header = True
        elif not drafts:
            preamble.append(lineno)
        elif kind == _SUBTITLE:
            drafts[-1].subtitle = _SUBTITLE_RE.match(line).group(1).strip()
        elif kind == _SECTION:
            drafts[-1].body.append((lineno, _SECTION_RE.match(line).group(1), True))
        else:
            drafts[-1].body.append((lineno, line, False))
    if preamble:
        problems.append(
            SourceProblem(
                where, preamble[0], f"{len(preamble)} line(s) before the first title ignored"
            )
        )

    articles: list[Article] = []
    seen: Counter[str] = Counter()
    section = ""
    date = _issue_date(issue)
    for draft in drafts:
        if draft.new_section:
            section = ""
        paras, names = _extract_byline(_join_paragraphs(draft.body))
        zone, section, zone_problem = _resolve_zone(draft, paras, section)
        line = draft.own_zone[0] if draft.own_zone else draft.title_line
        label = f"article «{draft.title}»"
        if not paras:
            problems.append(SourceProblem(where, line, f"{label} has no body text; skipped"))
            continue
        if zone_problem:
            problems.append(SourceProblem(where, line, f"{label}: {zone_problem}"))
        if not names:
            problems.append(SourceProblem(where, line, f"{label}: no byline found"))
        articles.append(
            Article(
                article_id=_article_id(issue, draft.title, seen),
                issue=issue,
                title=draft.title,
                text="\n".join(p for _, p in paras),
                zone=zone,
                subtitle=draft.subtitle,
                byline=" ".join(names),
                date=date,
                source=source,
                line=line,
            )
        )
    problems.sort(key=lambda problem: problem.line)  # stable: file order, whole-file ones first
    _LOG.debug("%s: %d articles, %d problems", where, len(articles), len(problems))
    return articles, problems


def _resolve_zone(
    draft: _Draft, paras: list[tuple[int, str]], section: str
) -> tuple[str, str, str]:
    """(zone, section for the articles after this one, problem or "")."""
    lead = paras[0][1] if paras else ""
    own = draft.own_zone[1] if draft.own_zone else ""
    if own and not _is_person_line(own):
        zone = _zone_from_line(own)
        return zone, zone, ""
    if draft.subtitle and (zone := _zone_from_content([draft.subtitle])):
        return zone, zone, ""  # ——走进左云经济技术开发区 names the zone of a feature article
    if own:  # a person's title (运城市委书记丁小强): the zone is the one the article is about
        zone = _zone_from_content([draft.title, lead], _place_hint(own))
        if not zone and _LINE_ZONE_RE.search(_shadow(own)):
            zone = _zone_from_line(own)
        if zone:
            return zone, zone, ""
        return "", section, f"no zone: «{own}» is a person's title and the text names no zone"
    if section:
        return section, section, ""
    zone = _zone_from_content([draft.title, lead])
    if zone:
        return zone, section, f"no zone line; zone «{zone}» taken from the text"
    return "", section, "no zone line and the text names no zone"


# ---------------------------------------------------------------------------------------------
# JSONL


def parse_jsonl(
    text: str, issue: str, source: str = ""
) -> tuple[list[Article], list[SourceProblem]]:
    """One {"id","title","text"} object a line; bad lines are reported and skipped."""
    where = source or issue
    problems: list[SourceProblem] = []
    articles: list[Article] = []
    seen: dict[str, int] = {}
    text = _ZERO_WIDTH_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(
                SourceProblem(
                    where, lineno, f"invalid JSON: {exc.msg} (column {exc.colno}); line skipped"
                )
            )
            continue
        article = _article_from_row(row, issue, source, where, lineno, problems)
        if article is None:
            continue
        if article.article_id in seen:
            problems.append(
                SourceProblem(
                    where,
                    lineno,
                    f"duplicate id {article.article_id!r} "
                    f"(first on line {seen[article.article_id]}); skipped",
                )
            )
            continue
        seen[article.article_id] = lineno
        articles.append(article)
    return articles, problems


def _article_from_row(
    row: object, issue: str, source: str, where: str, lineno: int, problems: list[SourceProblem]
) -> Article | None:
    if not isinstance(row, dict):
        problems.append(SourceProblem(where, lineno, "not a JSON object; line skipped"))
        return None
    missing = [key for key in ("id", "title", "text") if key not in row]
    if missing:
        problems.append(
            SourceProblem(where, lineno, f"missing field(s) {', '.join(missing)}; line skipped")
        )
        return None
    article_id = row["id"]
    if (
        isinstance(article_id, bool)
        or not isinstance(article_id, str | int)
        or not str(article_id).strip()
    ):
        problems.append(
            SourceProblem(where, lineno, "field id must be a non-empty string; line skipped")
        )
        return None
    fields: dict[str, str] = {}
    for key in ("title", "text", "zone", "subtitle", "byline", "issue", "date"):
        value = row.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            if key in ("title", "text"):
                problems.append(
                    SourceProblem(where, lineno, f"field {key} must be a string; line skipped")
                )
                return None
            problems.append(SourceProblem(where, lineno, f"field {key} must be a string; ignored"))
            value = ""
        fields[key] = value.strip()
    # One paragraph a line, no empty paragraphs, as for bulletins.
    body = "\n".join(line.strip() for line in fields["text"].split("\n") if line.strip())
    if not body:
        problems.append(SourceProblem(where, lineno, "empty text; line skipped"))
        return None
    return Article(
        article_id=str(article_id).strip(),
        issue=fields["issue"] or issue,
        title=fields["title"],
        text=body,
        zone=fields["zone"],
        subtitle=fields["subtitle"],
        byline=fields["byline"],
        date=fields["date"],
        source=source,
        line=lineno,
    )


def _parse_json_array(
    text: str, issue: str, source: str
) -> tuple[list[Article], list[SourceProblem]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(SourceProblem(source, exc.lineno, f"invalid JSON: {exc.msg}")) from exc
    if not isinstance(rows, list):
        raise InputError(SourceProblem(source, 0, "JSON file must hold an array of articles"))
    # Re-serialise one object a line so that both forms share a single code path.
    lines = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    articles, problems = parse_jsonl(lines, issue, source)
    problems = [SourceProblem(p.source, 0, f"item {p.line}: {p.message}") for p in problems]
    return articles, problems


# ---------------------------------------------------------------------------------------------
# Files


def load_file(path: Path) -> tuple[list[Article], list[SourceProblem]]:
    """Read and parse one input file: JSONL by extension, anything else as a bulletin."""
    path = Path(path)
    source = str(path)
    text, problems = read_text(path)
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        articles, more = parse_jsonl(text, path.stem, source)
    elif suffix == ".json" and text.lstrip().startswith("["):
        articles, more = _parse_json_array(text, path.stem, source)
    elif suffix == ".json":
        articles, more = parse_jsonl(text, path.stem, source)
    else:
        articles, more = parse_bulletin(text, path.stem, source)
    problems.extend(more)
    if not articles:
        detail = f"; first problem: {more[0]}" if more else ""
        raise InputError(SourceProblem(source, 0, f"no articles found{detail}"))
    _LOG.info("%s: %d articles, %d problems", source, len(articles), len(problems))
    return articles, problems
