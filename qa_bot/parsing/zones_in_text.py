"""Zones: the zone an article is about, from its section line or its text.

A section line names a zone (侯马经济开发区, 晉中開發區), a place (沁源县, 淄博市临淄区), a
unit (随州市招商办: its place is the zone) or a person's title (运城市委书记丁小强: the zone is
the one the text names in that place, else the place). Without one, a `——subtitle` or the
title may name it.
Patterns are simplified Chinese and run on the shadow (`shadow.py`), so traditional lines match.
"""

from __future__ import annotations

import re

from qa_bot.parsing.shadow import HAN_RE, posseg, wordset
from qa_bot.parsing.shadow import shadow as to_shadow

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
# A unit after its place: 随州市|招商办, 晋城市|商务局, 某县|人民政府.
_UNIT_AFTER_PLACE_RE = re.compile(
    r"[省市县区旗](?=[\u4e00-\u9fff]{0,8}(?:办|局|委|委员会|政府|中心|厅|处|管委会|服务中心)$)"
)
_LEADING_PLACE_RE = re.compile(r"^[\u4e00-\u9fff]{2,3}?[市县]")
_PLACE_SUFFIX_RE = re.compile(r"[省市县区旗镇乡]$")
_PERSON_TITLE_RE = re.compile(
    r"书记|市长|县长|区长|省长|镇长|乡长|主任|局长|厅长|部长|主席|常委|董事长|总经理|秘书长|巡视员|调研员"
)
_PERSON_PLACE_RE = re.compile(r"^(.{2,4}?)[省市县区](?:委|政府|人大|政协|长)")

# Shanxi's cities, counties and districts: where a zone name's place part starts. Generic
# district names (城区, 矿区, 郊区) are left out on purpose.
_GAZETTEER = wordset(
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
_PLACE_STOP = wordset(
    "深入 走进 走入 来到 前往 赴 到 在 于 对 与 和 及 同 是 的 了 将 把 被 向 从 为 由 "
    "各 该 本 此 全 全省 全市 全县 全区 省级 国家级 市级 县级 多个 重点"
)
_JIEBA_STOP_FLAGS = ("v", "p", "c", "u", "d", "r", "m", "q", "t", "f", "y", "e", "o", "x", "w")

def zone_from_line(line: str) -> str:
    """`祁县经济开发区纪检监察工委` → `祁县经济开发区`; `随州市招商办` → `随州市` (a unit stands for
    its place); `沁源县`, `淄博市临淄区` stay as they are."""
    line_shadow = to_shadow(line)
    matches = list(_LINE_ZONE_RE.finditer(line_shadow))
    if matches and line[matches[-1].end() :].strip():
        return line[: matches[-1].end()].strip()
    units = list(_UNIT_AFTER_PLACE_RE.finditer(line_shadow))
    if not matches and units:
        return line[: units[-1].start() + 1].strip()
    return line.strip()


def is_person_line(line: str) -> bool:
    return bool(_PERSON_TITLE_RE.search(to_shadow(line)))


def place_hint(line: str) -> str:
    """The place a person's title names: `运城市委书记丁小强` → `运城`."""
    shadow = to_shadow(line)
    for length in range(min(_GAZ_MAX, len(shadow)), 1, -1):
        if shadow[:length] in _GAZETTEER:
            return shadow[:length]
    match = _PERSON_PLACE_RE.match(shadow)
    return match.group(1) if match else ""


def has_place_evidence(line: str) -> bool:
    shadow = to_shadow(line)
    if match := _LINE_ZONE_RE.search(shadow):
        return match.start() >= 2  # 侯马开发区, not the column header 开发区动态
    return bool(
        (len(shadow) >= 2 and _PLACE_SUFFIX_RE.search(shadow))
        or _UNIT_AFTER_PLACE_RE.search(shadow)
        or any(shadow[i : i + n] in _GAZETTEER for n in (2, 3) for i in range(len(shadow)))
    )


def _place_before(shadow: str, start: int, hint: str) -> str:
    """The place name ending at `start` (where a zone suffix begins), or ""."""
    run_start = start
    while run_start > 0 and start - run_start < 16 and HAN_RE.match(shadow[run_start - 1]):
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
    for token in reversed(posseg().lcut(run)):
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
    shadow = to_shadow(text)
    found = []
    for match in _CONTENT_ZONE_RE.finditer(shadow):
        place = _place_before(shadow, match.start(), hint)
        if place:
            rank = _ZONE_RANK[match.group()] + (0 if not hint or place.startswith(hint) else 3)
            found.append((rank, text[match.start() - len(place) : match.end()]))
    return found


def zone_from_content(texts: list[str], hint: str = "") -> str:
    """The best zone name in these texts (earlier texts win ties): full names before short."""
    best: tuple[int, int, str] | None = None
    for order, text in enumerate(texts):
        for rank, name in _zones_in(text[:300], hint):
            if best is None or (rank, order) < best[:2]:
                best = (rank, order, name)
    return best[2] if best else ""



def resolve_zone(
    own: str, subtitle: str, title: str, lead: str, section: str
) -> tuple[str, str, str]:
    """(zone, section for the articles after this one, problem or "").

    `own` is the article's section line ("" if none), `section` the one still in force above.
    """
    if own and not is_person_line(own):
        zone = zone_from_line(own)
        return zone, zone, ""
    if subtitle and (zone := zone_from_content([subtitle]) or leading_place(subtitle)):
        return zone, section, ""  # ——走进左云经济技术开发区 names the zone of a feature article
    if own:  # a person's title (运城市委书记丁小强): the zone is the one the article is about
        hint = place_hint(own)
        zone = zone_from_content([title, lead], hint)
        if not zone and _LINE_ZONE_RE.search(to_shadow(own)):
            zone = zone_from_line(own)
        if zone:
            return zone, zone, ""
        if place := _place_of_person(own):
            return place, place, ""
        return "", section, f"no zone: «{own}» is a person's title and the text names no zone"
    named = zone_from_content([title, lead])
    if section and (not named or _mentions_place_of(section, title + lead)):
        return section, section, ""
    if named:
        return named, section, f"no zone line; zone «{named}» taken from the text"
    return "", section, "no zone line and the text names no zone"


def leading_place(text: str) -> str:
    """`大同市推进五大园区建设` → `大同市`: a city or county the text starts with, or ""."""
    text_shadow = to_shadow(text)
    for length in range(min(_GAZ_MAX, len(text_shadow)), 1, -1):
        if text_shadow[:length] in _GAZETTEER:
            suffix = text_shadow[length : length + 1]
            return text[: length + 1] if suffix and suffix in "市县区" else text[:length]
    match = _LEADING_PLACE_RE.match(text_shadow)
    return text[: match.end()] if match else ""


def _place_of_person(line: str) -> str:
    """`晋中市委副书记、市长常书铭` → `晋中市`."""
    match = _PERSON_PLACE_RE.match(to_shadow(line))
    return line[: match.end(1) + 1] if match else ""


def _mentions_place_of(section: str, text: str) -> bool:
    """Whether the text names the section's place (沁源县 → 沁源): then the section still holds."""
    stem = to_shadow(section)[:2]
    return stem in to_shadow(text)
