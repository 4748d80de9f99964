"""Span reader training data and metrics (no model: fast)."""

from __future__ import annotations

import random

from qa_bot.reader import EncodedPair
from qa_bot.reader_training import (
    Passage,
    Question,
    build_examples,
    gold_window,
    is_held_out,
    token_targets,
)

TEXT = (
    "广灵经济技术开发区位于大同市东南部。园区现有再生金属企业13家，去年产值20亿元。\n"
    "签约仪式由县长王建峰主持。五家企业代表出席了仪式。"
)


def _question(question: str, *answers: str) -> Question:
    return Question(Passage("test:1", "test", TEXT), question, answers)


def test_split_is_by_passage_and_stable():
    keys = [f"cmrc:DEV_{i}" for i in range(2000)]
    held = [k for k in keys if is_held_out(k, 0.2)]
    assert held == [k for k in keys if is_held_out(k, 0.2)]  # same every run
    assert 0.15 < len(held) / len(keys) < 0.25


def test_gold_window_is_the_sentence_holding_the_answer():
    question = _question("有多少家再生金属企业？", "13家")
    window_start, window_end, start, end = gold_window(question, 160)
    assert TEXT[start:end] == "13家"
    assert TEXT[window_start:window_end] == "园区现有再生金属企业13家，去年产值20亿元。"


def test_question_whose_answer_is_not_in_the_text_gives_no_example():
    assert gold_window(_question("谁写的？", "张三"), 160) is None
    assert build_examples([_question("谁写的？", "张三")], 160, 1.0, random.Random(0)) == []


def test_no_answer_examples_come_from_the_same_passage_without_the_answer():
    examples = build_examples([_question("谁主持？", "王建峰")], 160, 1.0, random.Random(0))
    positive, negative = examples
    assert positive.context[positive.answer_start : positive.answer_end] == "王建峰"
    assert negative.answer_start == negative.answer_end == -1
    assert negative.context in TEXT and "王建峰" not in negative.context


def test_token_targets_cover_the_answer_characters():
    # <s> q q </s> </s> 签约 仪式 由 县长 王建 峰 主持 </s>
    offsets = [(0, 0)] * 5 + [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 10), (10, 12), (0, 0)]
    candidate = [False] * 5 + [True] * 7 + [False]
    pair = EncodedPair(list(range(len(offsets))), offsets, candidate)
    assert token_targets(pair, 7, 10) == (9, 10)
    assert token_targets(pair, 8, 9) == (9, 9)  # inside one token: that token
    assert token_targets(pair, -1, -1) == (0, 0)  # no answer: <s>
    assert token_targets(pair, 11, 14) is None  # truncated away
