"""`qa-bot eval`: retrieval and answer quality on a question set, through the real answer path.

Question rows: `question`, a gold `passage_id` / `passage_ids` (article ids) or article
`title` (compared ignoring whitespace), and `answers` (a list of gold strings, or null when the
corpus does not answer the question and the bot should decline).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa_bot.config import Settings
from qa_bot.records import Answer

log = logging.getLogger(__name__)

DEPTH = 10  # passages asked for, for MRR@10
_SPACE = re.compile(r"\s+")


class EvalDataError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    text: str
    gold_ids: frozenset[str]
    gold_title: str | None
    answers: tuple[str, ...] | None  # None: unanswerable
    line: int

    @property
    def answerable(self) -> bool:
        return self.answers is not None


@dataclass
class Scores:
    retriever: str
    n: int = 0
    answerable: int = 0
    unanswerable: int = 0
    reciprocal_ranks: list[float] = field(default_factory=list)
    hits_at_1: int = 0
    hits_at_5: int = 0
    answer_checked: int = 0
    answer_hits: int = 0
    declined_unanswerable: int = 0
    declined_answerable: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        def ratio(part: int, whole: int) -> float | None:
            return round(part / whole, 4) if whole else None

        declined = self.declined_unanswerable + self.declined_answerable
        latencies = sorted(self.latencies_ms)
        return {
            "retriever": self.retriever,
            "n": self.n,
            "answerable": self.answerable,
            "recall@1": ratio(self.hits_at_1, self.answerable),
            "recall@5": ratio(self.hits_at_5, self.answerable),
            "mrr@10": round(sum(self.reciprocal_ranks) / self.answerable, 4)
            if self.answerable else None,
            "answer_hit": ratio(self.answer_hits, self.answer_checked),
            "answered_rate": ratio(self.answerable - self.declined_answerable, self.answerable),
            "decline_rate": ratio(self.declined_unanswerable, self.unanswerable),
            "no_answer_precision": ratio(self.declined_unanswerable, declined),
            "latency_ms_p50": _percentile(latencies, 50),
            "latency_ms_p95": _percentile(latencies, 95),
        }


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    position = (len(values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (position - low), 2)


def normalise_title(title: str) -> str:
    return _SPACE.sub("", title or "")


def load_questions(path: Path) -> list[Question]:
    questions = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row["question"]
            except (ValueError, KeyError, TypeError) as exc:
                raise EvalDataError(f"{path}:{line_number}: not a question row ({exc})") from exc
            ids = set(row.get("passage_ids") or [])
            if row.get("passage_id"):
                ids.add(row["passage_id"])
            answers = row.get("answers")
            questions.append(Question(
                text=text,
                gold_ids=frozenset(str(i) for i in ids),
                gold_title=normalise_title(row["title"]) if row.get("title") else None,
                answers=None if answers is None else tuple(a for a in answers if a),
                line=line_number,
            ))
    if not questions:
        raise EvalDataError(f"{path}: no questions")
    return questions


def is_gold(question: Question, article_id: str, title: str) -> bool:
    if question.gold_ids:
        return article_id in question.gold_ids
    return question.gold_title is not None and normalise_title(title) == question.gold_title


def score_answer(question: Question, answer: Answer, scores: Scores) -> None:
    scores.n += 1
    if not question.answerable:
        scores.unanswerable += 1
        scores.declined_unanswerable += answer.declined
        return
    scores.answerable += 1
    scores.declined_answerable += answer.declined
    rank = next(
        (r for r, hit in enumerate(answer.passages[:DEPTH], start=1)
         if is_gold(question, hit.chunk.article_id, hit.chunk.title)),
        None,
    )
    scores.reciprocal_ranks.append(1.0 / rank if rank else 0.0)
    scores.hits_at_1 += rank == 1
    scores.hits_at_5 += rank is not None and rank <= 5
    if question.answers:
        scores.answer_checked += 1
        sentence = answer.sentence.text if answer.sentence else ""
        scores.answer_hits += any(gold in sentence for gold in question.answers)


def evaluate(service, questions: list[Question], retriever: str) -> Scores:
    scores = Scores(retriever)
    service.answer(questions[0].text, k=DEPTH, mode=retriever)  # warm caches before timing
    for question in questions:
        started = time.perf_counter()
        answer = service.answer(question.text, k=DEPTH, mode=retriever)
        scores.latencies_ms.append((time.perf_counter() - started) * 1000)
        score_answer(question, answer, scores)
    return scores


def format_table(results: list[dict]) -> str:
    columns = ["retriever", "n", "recall@1", "recall@5", "mrr@10", "answer_hit",
               "answered_rate", "decline_rate", "no_answer_precision", "latency_ms_p50",
               "latency_ms_p95"]
    rows = [[_cell(result.get(c)) for c in columns] for result in results]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), separator, *(line(r) for r in rows)])


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) and value <= 1.0 else str(value)


def run_eval_command(args, settings: Settings) -> int:
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.index import IndexStore
    from qa_bot.ingest import Ingestor
    from qa_bot.service import QAService

    if args.questions.is_file() and is_conversation_file(args.questions):
        return run_conversation_eval(args, settings)
    try:
        questions = load_questions(args.questions)
    except (OSError, EvalDataError) as exc:
        print(f"qa-bot: error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        questions = questions[: args.limit]
    embedder = SentenceTransformerEmbedder(settings.model, show_progress=not args.json)
    with tempfile.TemporaryDirectory(prefix="qa-bot-eval-") as scratch:
        if args.corpus and not args.index_dir:
            settings = replace(settings, index_dir=scratch)
        store = IndexStore(settings.index_path)
        if args.corpus:
            report = Ingestor(settings, embedder, store, show_progress=not args.json).ingest(
                args.corpus)
            print(report.summary(), file=sys.stderr)
        service = QAService(settings, embedder=embedder, store=store)
        service.warm_up()
        modes = ["hybrid", "dense", "bm25"] if args.retriever == "all" else [args.retriever]
        results = [evaluate(service, questions, mode).as_dict() for mode in modes]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, ensure_ascii=False))
    else:
        print(f"{args.questions}: {len(questions)} questions")
        print(format_table(results))
    return 0


# -- conversations (issue 13) ----------------------------------------------------------------------
# Rows {"turns": [{"question", "title" | "passage_id", "answers"}, …]}: every turn is asked in
# one conversation, in order; first turns and follow-ups are scored separately, and the
# follow-ups once more asked alone (what they get without a conversation).
def is_conversation_file(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    return isinstance(json.loads(line).get("turns"), list)
                except (ValueError, AttributeError):
                    return False
    return False


def load_conversations(path: Path) -> list[list[Question]]:
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                turns = json.loads(line)["turns"]
                conversation = [_turn_question(turn, line_number) for turn in turns]
            except (ValueError, KeyError, TypeError) as exc:
                raise EvalDataError(
                    f"{path}:{line_number}: not a conversation row {{\"turns\": [...]}} ({exc})"
                ) from exc
            if conversation:
                conversations.append(conversation)
    if not conversations:
        raise EvalDataError(f"{path}: no conversations")
    return conversations


def _turn_question(turn: dict, line_number: int) -> Question:
    answers = turn.get("answers")
    ids = {str(turn["passage_id"])} if turn.get("passage_id") else set()
    return Question(
        text=turn["question"],
        gold_ids=frozenset(ids),
        gold_title=normalise_title(turn["title"]) if turn.get("title") else None,
        answers=None if answers is None else tuple(a for a in answers if a),
        line=line_number,
    )


def evaluate_conversations(service, conversations: list[list[Question]], retriever: str) -> dict:
    """Scores of first turns, follow-ups, and follow-ups asked alone; conversation memory."""
    from qa_bot.conversation import Conversation

    first, followup, alone = (Scores(retriever) for _ in range(3))
    footprints = []
    service.answer(conversations[0][0].text, k=DEPTH, mode=retriever)  # warm caches
    for turns in conversations:
        conversation = Conversation(idle_seconds=0)
        for number, question in enumerate(turns):
            started = time.perf_counter()
            answer = service.answer(question.text, k=DEPTH, mode=retriever,
                                    conversation=conversation)
            elapsed = (time.perf_counter() - started) * 1000
            scores = first if number == 0 else followup
            scores.latencies_ms.append(elapsed)
            score_answer(question, answer, scores)
            if number:
                log.info("follow-up %r understood as %r", question.text, answer.understood_as)
                started = time.perf_counter()
                answer = service.answer(question.text, k=DEPTH, mode=retriever)
                alone.latencies_ms.append((time.perf_counter() - started) * 1000)
                score_answer(question, answer, alone)
        footprints.append(conversation.footprint_bytes())
    return {
        "first_turn": first.as_dict(),
        "followup": followup.as_dict(),
        "followup_alone": alone.as_dict(),
        "conversation_bytes_max": max(footprints),
    }


def run_conversation_eval(args, settings: Settings) -> int:
    """`qa-bot eval` on a file of conversation rows."""
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.index import IndexStore
    from qa_bot.ingest import Ingestor
    from qa_bot.service import QAService

    try:
        conversations = load_conversations(args.questions)
    except (OSError, EvalDataError) as exc:
        print(f"qa-bot: error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        conversations = conversations[: args.limit]
    embedder = SentenceTransformerEmbedder(settings.model, show_progress=not args.json)
    with tempfile.TemporaryDirectory(prefix="qa-bot-eval-") as scratch:
        if args.corpus and not args.index_dir:
            settings = replace(settings, index_dir=scratch)
        store = IndexStore(settings.index_path)
        if args.corpus:
            report = Ingestor(settings, embedder, store, show_progress=not args.json).ingest(
                args.corpus)
            print(report.summary(), file=sys.stderr)
        service = QAService(settings, embedder=embedder, store=store)
        service.warm_up()
        modes = ["hybrid", "dense", "bm25"] if args.retriever == "all" else [args.retriever]
        results = [evaluate_conversations(service, conversations, mode) for mode in modes]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, ensure_ascii=False))
        return 0
    turns = sum(len(c) for c in conversations)
    print(f"{args.questions}: {len(conversations)} conversations, {turns} turns")
    for part in ("first_turn", "followup", "followup_alone"):
        print(f"\n{part}:")
        print(format_table([result[part] for result in results]))
    print(f"\nlargest conversation state: {max(r['conversation_bytes_max'] for r in results)} B")
    return 0
