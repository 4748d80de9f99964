"""The span reader: decoding on fake logits (fast) and the committed reader on known questions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qa_bot.config import ReaderSettings
from qa_bot.reader import (
    MAX_ANSWER_TOKENS,
    ReaderSpan,
    SpanReader,
    best_spans,
    encode_pairs,
    packaged_reader_dir,
    pad_batch,
)


# -- decoding on fake logits ---------------------------------------------------------------------
def _logits(length: int, starts: dict[int, float], ends: dict[int, float]):
    start, end = np.full(length, -5.0), np.full(length, -5.0)
    for i, v in starts.items():
        start[i] = v
    for i, v in ends.items():
        end[i] = v
    return start, end


def test_best_span_is_the_highest_start_plus_end_with_start_before_end():
    start, end = _logits(10, {3: 5.0, 7: 8.0}, {4: 4.0, 2: 9.0})
    (span,) = best_spans(start, end, [False] + [True] * 9)
    # 7 → 2 would score more but ends before it starts; 3 → 4 is the best legal pair.
    assert span[:2] == (3, 4)
    assert span[2] == pytest.approx(9.0 - (-10.0))  # minus the no-answer score at <s>


def test_span_length_is_capped():
    length = MAX_ANSWER_TOKENS + 20
    start, end = _logits(length, {1: 5.0, 10: 1.0}, {length - 1: 5.0, 12: 1.0})
    (span,) = best_spans(start, end, [False] + [True] * (length - 1))
    assert span[1] - span[0] < MAX_ANSWER_TOKENS
    assert (span[0], span[1]) != (1, length - 1)
    (short,) = best_spans(start, end, [False] + [True] * (length - 1), max_answer_tokens=3)
    assert short[:2] == (10, 12)


def test_spans_stay_on_candidate_tokens_and_score_against_no_answer():
    start, end = _logits(8, {0: 3.0, 1: 9.0, 5: 2.0}, {0: 3.0, 1: 9.0, 6: 2.0})
    candidate = [False, False, False, False, True, True, True, True]  # 1 is a question token
    spans = best_spans(start, end, candidate, top=3)
    assert spans[0][:2] == (5, 6)
    assert all(candidate[s] and candidate[e] and s <= e for s, e, _ in spans)
    assert spans[0][2] == pytest.approx(4.0 - 6.0)  # below zero: <s> (no answer) wins
    assert [s[2] for s in spans] == sorted((s[2] for s in spans), reverse=True)


def test_no_candidate_tokens_give_no_span():
    start, end = _logits(4, {}, {})
    assert best_spans(start, end, [False] * 4) == []


@pytest.fixture(scope="module")
def char_tokenizer():
    """A tiny tokenizer built like the bundled one: Unigram pieces, Metaspace, pair template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    special = ["<s>", "<pad>", "</s>", "<unk>", "▁", "query", ":"]
    pieces = [*special, *"王建峰主持签约仪式由谁了？。13家企业"]
    vocab = [(piece, -1.0 if len(piece) > 1 else -2.0) for piece in pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return tokenizer


def test_encoded_context_tokens_map_back_to_context_characters(char_tokenizer):
    context = "签约仪式由王建峰主持。"
    (pair,) = encode_pairs(char_tokenizer, "签约仪式由谁主持？", [context], max_tokens=64)
    assert pair.input_ids[0] == 0 and pair.input_ids[-1] == 2
    texts = [context[a:b] for (a, b), ok in zip(pair.offsets, pair.candidate, strict=True) if ok]
    assert "".join(texts) == context  # every context character, once, in order
    assert not pair.candidate[0]  # <s> is the no-answer slot, never a span
    first_context = pair.candidate.index(True)
    assert all(not ok for ok in pair.candidate[:first_context])  # question tokens excluded


def test_context_is_truncated_not_the_question(char_tokenizer):
    context = "签约仪式由王建峰主持。" * 10
    (pair,) = encode_pairs(char_tokenizer, "签约仪式由谁主持？", [context], max_tokens=24)
    assert len(pair.input_ids) == 24
    assert sum(pair.candidate) > 0


def test_pad_batch_pads_on_the_right(char_tokenizer):
    pairs = encode_pairs(char_tokenizer, "谁主持？", ["王建峰主持。", "王建峰主持了签约仪式。"], 64)
    ids, mask = pad_batch(pairs, pad_id=1)
    assert ids.shape == mask.shape == (2, max(len(p.input_ids) for p in pairs))
    assert ids.dtype == np.int64
    short = len(pairs[0].input_ids)
    assert (ids[0, short:] == 1).all() and (mask[0, short:] == 0).all() and mask[0, :short].all()


def test_unknown_precision_is_refused_with_the_setting_named():
    with pytest.raises(ValueError, match=r"\[reader\] precision"):
        SpanReader(ReaderSettings(precision="fp8"))


def test_missing_artifacts_say_what_to_do(tmp_path):
    reader = SpanReader(ReaderSettings(path=str(tmp_path)), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="train-reader"):
        reader.warm_up()


def test_committed_reader_is_small_and_describes_itself():
    folder = packaged_reader_dir()
    meta = json.loads((folder / "reader.json").read_text(encoding="utf-8"))
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 25 * 2**20
    assert {"base_model_sha256", "first_trained_layer", "max_tokens", "seed"} <= meta.keys()
    assert meta["held_out"]["gold_window"]["all"]["span_f1"] > 0.5


# -- the committed reader ------------------------------------------------------------------------
KNOWN = [
    # (question, contexts, index of the context that answers, what the span must hold)
    (
        "广灵经开区有多少家再生金属企业？",
        ["截至目前，广灵经济技术开发区已入驻再生金属企业13家，形成了产业集聚。",
         "开发区管委会将继续优化营商环境。"],
        0,
        "13家",
    ),
    (
        "签约仪式由谁主持？",
        ["会议听取了各园区的工作汇报。", "签约仪式由县长王建峰主持，五家企业代表出席。"],
        1,
        "王建峰",
    ),
    (
        "该项目什么时候正式开工？",
        ["该项目总投资5亿元，于2023年6月18日正式开工建设。", "项目建成后可新增就业岗位300个。"],
        0,
        "2023年6月18日",
    ),
]


@pytest.fixture(scope="module", params=["int8", "fp32"])
def committed_reader(request, bundled_model_dir):
    cache_dir = Path(os.environ.get("QA_BOT_MODEL_CACHE", "~/.cache/qa-bot/models")).expanduser()
    reader = SpanReader(ReaderSettings(precision=request.param, threads=2), cache_dir=cache_dir)
    reader.warm_up()
    return reader


@pytest.mark.slow
@pytest.mark.parametrize(("question", "contexts", "answering", "answer"), KNOWN)
def test_committed_reader_answers_known_questions(
    committed_reader, question, contexts, answering, answer
):
    spans = committed_reader.read(question, contexts, top=1)
    assert len(spans) == len(contexts)
    best = spans[0]
    assert isinstance(best, ReaderSpan)
    assert best.context == answering
    text = contexts[best.context][best.start : best.end]
    assert answer in text and len(text) <= len(answer) + 4, text
    assert spans == sorted(spans, key=lambda s: -s.score)
