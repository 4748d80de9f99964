"""Matching traditional text with simplified patterns, and the jieba tagger.

Zone and byline patterns are written in simplified Chinese; they run on a *shadow* of the text,
converted character by character (same length, so offsets found in the shadow carry over to
the text as printed, which is what records keep).
"""

from __future__ import annotations

import functools
import logging
import re

from qa_bot.chinese import to_simplified

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAN_RE = re.compile(f"[{HAN}]")


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


class _CharT2S(dict):
    """str.translate table that converts each Han character once, on first sight."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        simple = to_simplified(char) if HAN_RE.match(char) else char
        self[code] = simple if len(simple) == 1 else char
        return self[code]


_T2S_TABLE = _CharT2S()  # a cache of a pure function: same input, same output


def shadow(text: str) -> str:
    """`通訊員 黃鶴鳴` → `通讯员 黄鹤鸣`: same length, one character for one."""
    return text.translate(_T2S_TABLE)


@functools.cache
def posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter goes to stderr
    return jieba.posseg
