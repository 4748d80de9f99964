"""Bylines: who wrote an article, as printed, and the people's names in it.

A byline is people's names and/or an organisation, with role words and brackets around them,
in every order the press uses::

    （王波）  (记者 张再行)  （廉亮 报道）  （梁琛 摄）  （记者 刘少伟 实习生 康书维）
    本报记者 李建斌 杨珏 本报通讯员 马静波     临淄融媒记者郑晓伟 黄浩源报道
    记者唐天才、通讯员倪运之报道   （文章来源：晋中日报）   （王 思）   攝影記者 黃鶴鳴

`parse_byline` reads one such text into pieces — roles, outlets, names — by a small grammar:
a piece glued in front of a role that introduces people (`本报`记者, `临淄融媒`记者) is an
outlet; a piece glued in front of a role that closes a credit (`黄浩源`报道, `刘勇`摄) is a name;
two single characters in a row are one name with a space inside (王 思 → 王思). Anything that
is not a role, an outlet or a name makes the text no byline at all.

`extract_bylines` finds them in an article: at the end of the last paragraph, in brackets or
after a space (`。 吕平`), on lines of their own (also repeated mid-article, with a photo
caption left after the last one), and in the lead (`本刊讯 见习记者徐王俊报道：`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qa_bot.parsing.shadow import HAN, posseg, shadow, wordset

# Roles that introduce the people after them (记者 张三); an outlet may be glued before them.
_LEADING_ROLES = wordset(
    "记者 本刊记者 特约记者 见习记者 实习记者 首席记者 摄影记者 文字记者 全媒体记者 融媒记者 "
    "通讯员 特约通讯员 实习生 撰稿 撰文 作者 编辑 责任编辑 责编 编审 审核 校对 文字 图文 "
    "摄影 摄像 视频 策划 统筹 监制 主编 整理 供稿 报道 文 图 摄"
)
# Roles that close a credit, glued after the names (黄浩源报道, 刘勇摄).
_CLOSING_ROLES = wordset("报道 摄 摄影 供稿 整理 撰稿 文 图")
# Roles after which an organisation follows (文章来源：晋中日报).
_SOURCE_ROLES = wordset("来源 文章来源 稿源 信息来源 据")
_ROLES = _LEADING_ROLES | _CLOSING_ROLES | _SOURCE_ROLES
# Found inside a longer piece only when multi-character: 文, 图, 摄 are also name characters.
_GLUED_ROLES = sorted((r for r in _ROLES if len(r) > 1), key=len, reverse=True)
_SINGLE_CHAR_CLOSERS = frozenset(r for r in _CLOSING_ROLES if len(r) == 1) - {"文", "图"}

_SEPARATORS_RE = re.compile(r"[\s\u3000、，,；;|｜:：]+")
_NAME_RE = re.compile(f"[{HAN}]{{2,4}}|[{HAN}]{{1,6}}[·•・][{HAN}]{{1,8}}")
_ONE_HAN_RE = re.compile(f"[{HAN}]")
# Outlets and offices: 本报, 本刊, …日报, …网, …融媒, …台办, …中心.
_OUTLET_START = ("本报", "本刊", "本台", "本网")
_OUTLET_END = (*"报网社台媒办局委会站部处所院室组队科", "中心", "新闻", "传媒", "融媒")
# A newspaper, site or station: on a line of its own, a source credit even without brackets
# (晋中日报), where an office (晋中市商务局) may be a section line.
_PRESS_END = ("报", "网", "社", "台", "融媒", "新闻", "传媒", "频道", "客户端", "公众号")
# Words that look like names by shape but are not people.
_NOT_NAMES = wordset(
    "试行 暂行 草案 修订 修订稿 修正 征求意见稿 节选 摘编 摘要 原创 转载 来源 稿源 资料 "
    "资料图 资料图片 图片 配图 供图 完 全文 全文完 待续 未完待续 续完 下同 同上 略 附件 编者按 "
    "试点 暂定 特此通知 现场"
)
_NOT_NAME_END = frozenset("报网社台局委办会区县市省部处所站院厅司室组队科")
# Common surnames, for bylines whose position alone is not conclusive. Characters that mostly
# start ordinary words (和, 来, 都, 由, 以…) are left out on purpose.
_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛"
    "郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦"
    "俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕"
    "屈饶解牟艾尤穆卓吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂佟臧闵苟邬边卞姬"
    "师仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩佘池查麻苑迟邝封谈匡鞠惠荆冀郁胥班储栗燕楚鄢劳谌奚"
    "皮粟冼蔺楼满闻厉伊仝郜阚权帅屠豆朴盖练廉禹井祖漆巴丰支卿狄计索宣晋芮扈晁邸雍辜裘亓邰赫剌"
)
_COMPOUND_SURNAMES = wordset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 令狐 夏侯 端木 南宫 独孤 轩辕"
)

# What may end the sentence before a byline in brackets or after a space.
_SENTENCE_END = frozenset("。！？；…!?;”’」』）)】")
_OPENERS, _CLOSERS = "（(〔【", "）)〕】"
# 本刊讯 （记者 张三） … / 本刊讯 见习记者徐王俊报道：… / 新华社太原6月1日电（记者 张三）…
_LEAD_BYLINE_RE = re.compile(
    r"^(本[刊报報][讯訊]|[^\s，。：:；（()）]{2,24}?[电電])[ \t\u3000]*"
    r"(?:[（(]([^（()）]{1,40})[）)]"
    r"|([^，。：:；（(]{2,40}?(?:报道|報道|摄|攝|电|電))[：:，, \t\u3000])"
    r"[ \t\u3000]*"
)
# Marks some papers print before a byline line.
_ORNAMENTS = "□■●◎○◆◇★☆▲△▶►※ \t\u3000"
# A caption left after the byline: short, at most one sentence (签约仪式现场。 刘勇 摄).
_CAPTION_MAX = 40


@dataclass(frozen=True)
class Byline:
    printed: str  # as printed, outer brackets removed: "记者 刘少伟 实习生 康书维"
    names: tuple[str, ...]  # people only, no roles, outlets or inner spaces: ("刘少伟", "康书维")
    credited: bool  # has a role word (记者, 摄, 来源…), so it is a byline wherever it stands


def parse_byline(text: str) -> Byline | None:
    """The byline in `text` (brackets allowed around it), or None if it is anything else."""
    printed = text.strip().lstrip(_ORNAMENTS)  # □本报记者 张三
    if printed[:1] in _OPENERS and printed[-1:] in _CLOSERS:
        printed = printed[1:-1].strip()
    if not printed or len(printed) > 60:
        return None
    names: list[str] = []
    credited = outlets = False
    single = ""  # a lone character waiting for its second half: 王 思
    after_source = False
    for token in _SEPARATORS_RE.split(printed):
        if not token:
            continue
        for kind, piece in _pieces(token):
            if single and (kind != "text" or not _ONE_HAN_RE.fullmatch(piece)):
                return None
            if kind == "role":
                credited = True
                after_source = shadow(piece) in _SOURCE_ROLES
            elif kind == "outlet" or (kind == "text" and after_source):
                outlets = True
            elif _ONE_HAN_RE.fullmatch(piece):
                if not single:
                    single = piece
                    continue
                piece, single = single + piece, ""
                if piece not in names:
                    names.append(piece)
            elif _valid_name(piece):
                if piece not in names:
                    names.append(piece)
            elif _is_outlet(piece):
                outlets = True
            else:
                return None
    if single or not (names or outlets):
        return None
    return Byline(printed, tuple(names), credited)


def _pieces(token: str) -> list[tuple[str, str]]:
    """Split a token at role words into ("role", 记者), ("outlet", 本报) and ("text", 黄浩源).

    A piece glued before a role that closes a credit stays text (a name: 黄浩源报道); glued
    before one that opens a credit (本报记者, 临淄融媒记者), it is the outlet the person works for.
    """
    token_shadow = shadow(token)
    if token_shadow in _ROLES:
        return [("role", token)]
    if "/" in token or "／" in token:  # 文/图, 文/吴十, 张三/摄, or 最溧水/今日溧水通讯员
        *heads, last = [p for p in re.split("[/／]", token) if p] or [""]
        if heads and all(shadow(p) in _ROLES for p in heads):
            return [("role", p) for p in heads] + _pieces(last)
        if len(heads) == 1 and _valid_name(heads[0]) and shadow(last) in _ROLES:
            return [("text", heads[0]), ("role", last)]
    found: list[tuple[str, str]] = []
    start = position = 0
    while position < len(token):
        role = next((r for r in _GLUED_ROLES if token_shadow.startswith(r, position)), None)
        if role is None and position == len(token) - 1 and position > 1:
            last_char = token_shadow[position]
            role = last_char if last_char in _SINGLE_CHAR_CLOSERS else None
        if role is None:
            position += 1
            continue
        if position > start:
            found.append(("text", token[start:position]))
        found.append(("role", token[position : position + len(role)]))
        position = start = position + len(role)
    if start < len(token):
        found.append(("text", token[start:]))
    pieces: list[tuple[str, str]] = []
    for index, (kind, piece) in enumerate(found):
        following = found[index + 1][1] if index + 1 < len(found) else ""
        if kind == "text" and following:  # glued to the role after it
            closing = shadow(following) in _CLOSING_ROLES and _valid_name(piece)
            kind = "text" if closing else "outlet"
        elif kind == "text" and shadow(piece).startswith(_OUTLET_START):
            kind = "outlet"
        pieces.append((kind, piece))
    return pieces


def _valid_name(piece: str) -> bool:
    if not _NAME_RE.fullmatch(piece):
        return False
    piece_shadow = shadow(piece)
    return piece_shadow not in _NOT_NAMES and piece_shadow[-1] not in _NOT_NAME_END


def _is_outlet(piece: str) -> bool:
    piece_shadow = shadow(piece)
    return len(piece) >= 2 and (
        piece_shadow.startswith(_OUTLET_START) or piece_shadow.endswith(_OUTLET_END)
    )


def looks_like_name(name: str) -> bool:
    """For names that position alone does not make certain (bare, or glued to the text):
    a common surname, or jieba's guess (pen names like 晓晓妹)."""
    name_shadow = shadow(name)
    if name_shadow[0] in _SURNAMES or name_shadow[:2] in _COMPOUND_SURNAMES or "·" in name:
        return True
    tokens = posseg().lcut(name_shadow)
    return bool(tokens) and tokens[0].flag.startswith("nr")


def _convincing(byline: Byline | None) -> bool:
    """A byline that is one without brackets: credited, or only people's names."""
    return byline is not None and (
        byline.credited or (bool(byline.names) and all(map(looks_like_name, byline.names)))
    )


def is_whole_byline(line: str) -> bool:
    """A line that is nothing but a byline: （王波）, 撰稿：冯慧媛, 本报记者 张三 李四, 晋中日报."""
    return is_credit_line(line) or _convincing(parse_byline(line.strip()))


def is_credit_line(line: str) -> bool:
    """A byline line that no section line can be: in brackets, with a role word, or a press
    outlet — unlike a bare name, which may also be a place (吕梁)."""
    text = line.strip()
    byline = parse_byline(text)
    if byline is None:
        return False
    if text[:1] in _OPENERS and text[-1:] in _CLOSERS:
        return True
    return byline.credited or (
        not byline.names and shadow(byline.printed).endswith(_PRESS_END)
    )


def _trailing_bracket_byline(para: str, is_last: bool) -> tuple[str, Byline] | None:
    """(paragraph without it, byline) when the paragraph ends with a byline in brackets."""
    text = para.rstrip()
    if text[-1:] not in _CLOSERS:
        return None
    start = max(text.rfind(c) for c in _OPENERS)
    if start <= 0 or len(text) - start > 64:
        return None
    byline = parse_byline(text[start:])
    if byline is None:
        return None
    if text.count("《", 0, start) > text.count("》", 0, start):  # 《……办法（试行）》
        return None
    before = text[:start]
    # "…办法（试行）" vs "…发展（王波）" with the full stop missing: only trust the latter at the
    # end of the article and when it really looks like people.
    glued = not before[-1].isspace() and before[-1] not in _SENTENCE_END
    if glued and not (is_last and _convincing(byline)):
        return None
    return before.rstrip(), byline


def _trailing_bare_byline(para: str) -> tuple[str, Byline] | None:
    """`…迈上新的台阶。 吕平`: names after whitespace following the last sentence."""
    text = para.rstrip()
    cut = max(text.rfind(c) for c in _SENTENCE_END)
    tail = text[cut + 1 :]
    if cut < 0 or not tail[:1].isspace() or len(tail) > 40:
        return None
    byline = parse_byline(tail)
    return (text[: cut + 1], byline) if _convincing(byline) else None  # `。 特此通知`: none


def _lead_byline(para: str) -> tuple[str, Byline] | None:
    """`本刊讯 见习记者徐王俊报道：为办好…` → (`本刊讯 为办好…`, the byline)."""
    match = _LEAD_BYLINE_RE.match(para)
    if match is None:
        return None
    byline = parse_byline(match.group(2) or match.group(3))
    if byline is None or not (match.group(2) or byline.credited):
        return None
    return f"{match.group(1)} {para[match.end() :]}".rstrip(), byline


def _is_caption(para: str) -> bool:
    """Short, and either no sentence at all or one closed by a photo credit (…现场。 刘勇 摄)."""
    text = para.strip()
    if len(text) > _CAPTION_MAX:
        return False
    return not any(c in _SENTENCE_END for c in text) or shadow(text).endswith(("摄", "摄影"))


def extract_bylines(
    paras: list[tuple[int, str]],
) -> tuple[list[tuple[int, str]], Byline | None]:
    """Take every byline out of the paragraphs; return what is left and the byline (merged:
    printed forms joined by a space, each once; names each once)."""
    own_lines = [i for i, (_, p) in enumerate(paras) if is_whole_byline(p)]
    end = len(paras)
    if own_lines and own_lines[-1] < end - 1:
        # Photo captions printed after the closing byline (签约仪式现场。 刘勇 摄) are no text.
        tail = [p for _, p in paras[own_lines[-1] + 1 :]]
        if len(tail) <= 2 and all(map(_is_caption, tail)):
            end = own_lines[-1] + 1
    found: list[Byline] = []
    kept: list[tuple[int, str]] = []
    for index, (lineno, para) in enumerate(paras[:end]):
        if index == 0 and (lead := _lead_byline(para)) is not None:
            para, byline = lead
            found.append(byline)
        if index in own_lines:
            found.append(parse_byline(para))
            continue
        trailing = _trailing_bracket_byline(para, index == end - 1)
        if trailing is None and index == end - 1:
            trailing = _trailing_bare_byline(para)
        if trailing is not None:
            para, byline = trailing
            found.append(byline)
        if para.strip():
            kept.append((lineno, para))
    return kept, _merge(found)


def _merge(found: list[Byline]) -> Byline | None:
    if not found:
        return None
    printed: list[str] = []
    names: list[str] = []
    for byline in found:
        if byline.printed not in printed:
            printed.append(byline.printed)
        names.extend(n for n in byline.names if n not in names)
    return Byline(" ".join(printed), tuple(names), any(b.credited for b in found))
