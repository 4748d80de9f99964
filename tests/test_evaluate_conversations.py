"""`qa-bot eval` on conversation rows: every turn asked in one conversation, first turns and
follow-ups scored apart, follow-ups once more asked alone."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from qa_bot.cli import build_parser
from qa_bot.evaluate import (
    EvalDataError,
    evaluate_conversations,
    is_conversation_file,
    load_conversations,
)
from qa_bot.records import Answer, AnswerSentence, Chunk, Hit

FIXTURE = Path(__file__).parent / "fixtures" / "conversations.jsonl"


def test_conversation_rows_are_read_turn_by_turn(tmp_path):
    assert is_conversation_file(FIXTURE)
    conversations = load_conversations(FIXTURE)
    assert [len(c) for c in conversations] == [2, 2, 2]
    first, follow = conversations[0]
    assert follow.text == "他要求全区上下做什么？" and follow.gold_title == first.gold_title
    assert not conversations[2][1].answerable
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "a", "answers": []}\n')
    assert not is_conversation_file(questions)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": [{"answers": []}]}\n')
    with pytest.raises(EvalDataError, match=r"bad\.jsonl:1"):
        load_conversations(bad)


class RecordingService:
    """Answers 'right' only when a follow-up comes with its conversation."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def answer(self, question, k=None, mode="hybrid", conversation=None):
        self.calls.append((question, conversation))
        title = "召开2023年项目建设第19次调度会"
        if question.startswith("他") and conversation is None:
            title = "别的文章"
        chunk = Chunk("i/1", 0, "李俊胜要求，全区上下要统一思想、形成共识。", 0, 9, "i", title)
        hit = Hit(chunk, 1.0)
        return Answer(question, AnswerSentence(chunk.text, chunk), [hit])


def test_first_turns_and_followups_are_scored_apart():
    service = RecordingService()
    result = evaluate_conversations(service, load_conversations(FIXTURE)[:1], "hybrid")
    assert set(result) == {"first_turn", "followup", "followup_alone", "conversation_bytes_max"}
    assert result["first_turn"]["n"] == result["followup"]["n"] == 1
    assert result["followup"]["recall@1"] == 1.0
    assert result["followup_alone"]["recall@1"] == 0.0
    asked = [(q, c is not None) for q, c in service.calls[1:]]  # after the warm-up
    assert asked == [("侯马经济开发区的调度会是谁主持的？", True), ("他要求全区上下做什么？", True),
                     ("他要求全区上下做什么？", False)]
    assert 0 < result["conversation_bytes_max"] < 8_000


def test_global_options_are_accepted_after_the_command():
    parser = build_parser()
    after = parser.parse_args(["ingest", "corpus/", "--index-dir", "/tmp/d", "-v"])
    before = parser.parse_args(["--index-dir", "/tmp/d", "-v", "ingest", "corpus/"])
    for args in (after, before):
        assert (args.command, args.index_dir, args.verbose) == ("ingest", "/tmp/d", 1)
    assert parser.parse_args(["ask", "问题", "--config", "x.toml"]).config == Path("x.toml")
    assert parser.parse_args(["ingest", "corpus/"]).index_dir is None


@pytest.mark.slow
def test_qa_bot_eval_reads_conversations(seed_index_dir):
    from qa_bot.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", str(FIXTURE), "--index-dir", str(seed_index_dir), "--json"]) == 0
    result = json.loads(out.getvalue())
    assert result["first_turn"]["n"] == result["followup"]["n"] == 3
    assert result["first_turn"]["recall@1"] == 1.0
    assert result["followup"]["recall@1"] == 1.0 and result["followup"]["answer_hit"] == 1.0
    assert result["followup_alone"]["n"] == 3  # the same follow-ups, asked alone
