"""`qa-bot eval`: retrieval and answer quality on a question set, through the real answer path.

Question rows: `question`, a gold `passage_id` / `passage_ids` (article ids) or article
`title` (compared ignoring whitespace), and `answers` (a list of gold strings, or null when the
corpus does not answer the question and the bot should decline); optional `kind` (lexical,
paraphrase, byline, unanswerable…) for a breakdown. A bad row is reported and skipped.

Span metrics follow the official CMRC 2018 evaluation: both sides lower-cased and stripped of
punctuation (Chinese and ASCII) and whitespace; F1 over the characters of their longest common
substring, exact match of the normalised strings; the best over the gold answers. (CMRC scores a
run of Latin letters or digits as one nltk word; here every character counts alike.)
"""

from __future__ import annotations

import json
import logging
import re
import string
import sys
import tempfile
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from pathlib import Path

from qa_bot.config import Settings
from qa_bot.records import Answer, SourceProblem

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
    kind: str = ""  # the row's `kind`, for the breakdown; empty when the row has none

    @property
    def answerable(self) -> bool:
        return self.answers is not None


@dataclass(frozen=True)
class Outcome:
    """How the answer path did on one question: what `Scores` adds up and `--details` shows."""

    answerable: bool
    declined: bool
    rank: int | None = None  # of the gold article among the passages (1-based), within DEPTH
    span: str = ""  # the bold span's text; empty when declined or no span was found
    answer_hit: bool = False  # the answer sentence contains a gold answer
    span_f1: float | None = None  # None: no gold answer to compare with
    span_em: bool = False


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
    span_f1_sum: float = 0.0  # over the answer_checked questions
    span_exact: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.n += 1
        if not outcome.answerable:
            self.unanswerable += 1
            self.declined_unanswerable += outcome.declined
            return
        self.answerable += 1
        self.declined_answerable += outcome.declined
        self.reciprocal_ranks.append(1.0 / outcome.rank if outcome.rank else 0.0)
        self.hits_at_1 += outcome.rank == 1
        self.hits_at_5 += outcome.rank is not None and outcome.rank <= 5
        if outcome.span_f1 is not None:
            self.answer_checked += 1
            self.answer_hits += outcome.answer_hit
            self.span_f1_sum += outcome.span_f1
            self.span_exact += outcome.span_em

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
            "span_f1": round(self.span_f1_sum / self.answer_checked, 4)
            if self.answer_checked else None,
            "span_em": ratio(self.span_exact, self.answer_checked),
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


# Unicode punctuation (category P*) covers the Chinese marks; ASCII symbols such as + = ~ and
# the full-width ～ are symbols to Unicode, yet CMRC removes them too.
_EXTRA_PUNCTUATION = frozenset(string.punctuation) | {"～"}


def normalise_answer(text: str) -> str:
    """Lower-cased, without punctuation (Chinese and ASCII) or whitespace: what CMRC compares."""
    return "".join(
        char for char in text.lower()
        if not char.isspace()
        and char not in _EXTRA_PUNCTUATION
        and not unicodedata.category(char).startswith("P")
    )


def span_f1(prediction: str, answers: tuple[str, ...]) -> float:
    """CMRC character F1 of a predicted span: the best over the gold answers."""
    predicted = normalise_answer(prediction)
    best = 0.0
    for answer in answers:
        gold = normalise_answer(answer)
        # Without junk heuristics SequenceMatcher's longest match is the exact longest common
        # substring (CMRC's find_lcs).
        common = SequenceMatcher(None, gold, predicted, autojunk=False).find_longest_match().size
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def span_exact_match(prediction: str, answers: tuple[str, ...]) -> bool:
    predicted = normalise_answer(prediction)
    return bool(predicted) and any(normalise_answer(answer) == predicted for answer in answers)


def bold_span(answer: Answer) -> str:
    """The text shown in bold as the answer: what span metrics score.

    The one place that knows how an answer marks its key words, so a new kind of answer
    (a list of items, an article's own fields) changes this function and nothing else here.
    """
    return answer.sentence.span_text if answer.sentence is not None else ""


def read_questions(path: Path) -> tuple[list[Question], list[SourceProblem]]:
    """The valid question rows of a file, and a problem (with its line) for each bad row."""
    questions, problems = [], []
    with path.open("rb") as handle:  # decoded line by line: one bad byte spoils only its row
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig")
                if line.strip():
                    questions.append(parse_question(line, line_number))
            except UnicodeDecodeError as exc:
                problems.append(SourceProblem(str(path), line_number, f"not UTF-8 ({exc})"))
            except EvalDataError as exc:
                problems.append(SourceProblem(str(path), line_number, str(exc)))
    return questions, problems


def load_questions(path: Path) -> list[Question]:
    """Every row of a file that must be all valid (one written by `feedback export`)."""
    questions, problems = read_questions(path)
    if problems:
        raise EvalDataError(f"{problems[0]} (and {len(problems) - 1} more bad rows)"
                            if len(problems) > 1 else str(problems[0]))
    if not questions:
        raise EvalDataError(f"{path}: no questions")
    return questions


def parse_question(line: str, line_number: int) -> Question:
    """One JSONL row as a Question; EvalDataError says what is wrong with it."""
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise EvalDataError(f"not JSON ({exc})") from exc
    if not isinstance(row, dict):
        raise EvalDataError(f"not a question row: a JSON {type(row).__name__}, not an object")
    text = row.get("question")
    if not isinstance(text, str) or not text.strip():
        raise EvalDataError("no question: `question` is missing or empty")
    if "answers" not in row:
        raise EvalDataError("no `answers` field (a list of gold strings, or null: unanswerable)")
    answers = row["answers"]
    if answers is not None and (
        not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)
    ):
        raise EvalDataError("`answers` must be a list of strings or null")
    passage_ids, title = row.get("passage_ids") or [], row.get("title")
    if not isinstance(passage_ids, list) or not isinstance(title, str | None):
        raise EvalDataError("`passage_ids` must be a list and `title` a string")
    ids = {str(i) for i in passage_ids}
    if row.get("passage_id"):
        ids.add(str(row["passage_id"]))
    if answers is not None and not ids and not title:
        raise EvalDataError("an answerable question needs a gold `passage_id`, "
                            "`passage_ids` or `title`")
    kind = row.get("kind")
    return Question(
        text=text,
        gold_ids=frozenset(ids),
        gold_title=normalise_title(title) if title else None,
        answers=None if answers is None else tuple(a for a in answers if a),
        line=line_number,
        kind=kind if isinstance(kind, str) else "",
    )


def is_gold(question: Question, article_id: str, title: str) -> bool:
    if question.gold_ids:
        return article_id in question.gold_ids
    return question.gold_title is not None and normalise_title(title) == question.gold_title


def judge(question: Question, answer: Answer) -> Outcome:
    if not question.answerable:
        return Outcome(answerable=False, declined=answer.declined)
    rank = next(
        (r for r, hit in enumerate(answer.passages[:DEPTH], start=1)
         if is_gold(question, hit.chunk.article_id, hit.chunk.title)),
        None,
    )
    span = bold_span(answer)
    if not question.answers:  # answerable, but no gold string to compare with
        return Outcome(answerable=True, declined=answer.declined, rank=rank, span=span)
    sentence = answer.sentence.text if answer.sentence else ""
    return Outcome(
        answerable=True,
        declined=answer.declined,
        rank=rank,
        span=span,
        answer_hit=any(gold in sentence for gold in question.answers),
        span_f1=round(span_f1(span, question.answers), 4) if span else 0.0,
        span_em=span_exact_match(span, question.answers),
    )


def score_answer(question: Question, answer: Answer, scores: Scores) -> Outcome:
    outcome = judge(question, answer)
    scores.add(outcome)
    return outcome


def detail_row(question: Question, answer: Answer, outcome: Outcome, retriever: str) -> dict:
    """One `--details` row: enough to read why a question was missed without rerunning it."""
    sentence = answer.sentence
    chunk = sentence.chunk if sentence else None
    return {
        "line": question.line,
        "question": question.text,
        "kind": question.kind or None,
        "retriever": retriever,
        "gold_title": question.gold_title,
        "gold_ids": sorted(question.gold_ids),
        "gold_answers": list(question.answers) if question.answers is not None else None,
        "rank": outcome.rank,
        "sentence": sentence.text if sentence else None,
        "span": outcome.span or None,
        "declined": answer.declined,
        "declined_reason": answer.declined_reason or None,
        "confidence": sentence.score if sentence else None,
        "answer_title": chunk.title if chunk else None,
        "answer_zone": chunk.zone if chunk else None,
        "answer_article_id": chunk.article_id if chunk else None,
        "answer_hit": outcome.answer_hit if outcome.span_f1 is not None else None,
        "span_f1": outcome.span_f1,
        "span_em": outcome.span_em if outcome.span_f1 is not None else None,
    }


@dataclass
class Run:
    """One retriever over the question set: overall scores, per kind, and per question."""

    overall: Scores
    by_kind: dict[str, Scores] = field(default_factory=dict)
    details: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        result = self.overall.as_dict()
        result["by_kind"] = {
            kind: {k: v for k, v in scores.as_dict().items() if k != "retriever"}
            for kind, scores in sorted(self.by_kind.items())
        }
        return result


def evaluate(service, questions: list[Question], retriever: str) -> Run:
    run = Run(Scores(retriever))
    service.answer(questions[0].text, k=DEPTH, mode=retriever)  # warm caches before timing
    for question in questions:
        started = time.perf_counter()
        answer = service.answer(question.text, k=DEPTH, mode=retriever)
        latency_ms = (time.perf_counter() - started) * 1000
        outcome = judge(question, answer)
        run.overall.add(outcome)
        run.overall.latencies_ms.append(latency_ms)
        if question.kind:
            kind_scores = run.by_kind.setdefault(question.kind, Scores(retriever))
            kind_scores.add(outcome)
            kind_scores.latencies_ms.append(latency_ms)
        run.details.append(detail_row(question, answer, outcome, retriever))
    return run


def format_table(results: list[dict]) -> str:
    """One row per retriever, each followed by a row per question kind."""
    columns = ["retriever", "n", "recall@1", "recall@5", "mrr@10", "answer_hit", "span_f1",
               "span_em", "answered_rate", "decline_rate", "no_answer_precision",
               "latency_ms_p50", "latency_ms_p95"]
    rows = []
    for result in results:
        rows.append([_cell(result.get(c)) for c in columns])
        for kind, figures in (result.get("by_kind") or {}).items():
            rows.append([f"  · {kind}"] + [_cell(figures.get(c)) for c in columns[1:]])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), separator, *(line(r) for r in rows)])


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) and value <= 1.0 else str(value)


def write_details(path: Path, runs: list[Run]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for run in runs:
            for row in run.details:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextmanager
def _eval_service(args, settings: Settings):
    """The answer service of an eval run: over --index-dir, or over a throwaway index of
    --corpus, ingested first."""
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.index import IndexStore
    from qa_bot.ingest import Ingestor
    from qa_bot.service import QAService

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
        yield service


def _modes(args) -> list[str]:
    return ["hybrid", "dense", "bm25"] if args.retriever == "all" else [args.retriever]


def run_eval_command(args, settings: Settings) -> int:

    if args.questions.is_file() and is_conversation_file(args.questions):
        return run_conversation_eval(args, settings)
    try:
        questions, problems = read_questions(args.questions)
    except OSError as exc:
        print(f"qa-bot: error: cannot read {args.questions}: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"qa-bot: skipped {problem}", file=sys.stderr)
    if not questions:
        print(f"qa-bot: error: {args.questions}: no valid question row "
              f"({len(problems)} bad rows); see README, Quality, for the row format",
              file=sys.stderr)
        return 2
    if args.limit:
        questions = questions[: args.limit]
    if args.details:
        try:  # fail now, not after an hour of questions
            args.details.write_text("", encoding="utf-8")
        except OSError as exc:
            print(f"qa-bot: error: cannot write details to {args.details}: {exc}",
                  file=sys.stderr)
            return 2
    with _eval_service(args, settings) as service:
        runs = [evaluate(service, questions, mode) for mode in _modes(args)]
    if args.details:
        write_details(args.details, runs)
    results = [run.as_dict() for run in runs]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, ensure_ascii=False))
    else:
        skipped = f" ({len(problems)} bad rows skipped)" if problems else ""
        print(f"{args.questions}: {len(questions)} questions{skipped}")
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

    try:
        conversations = load_conversations(args.questions)
    except (OSError, EvalDataError) as exc:
        print(f"qa-bot: error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        conversations = conversations[: args.limit]
    with _eval_service(args, settings) as service:
        results = [evaluate_conversations(service, conversations, mode)
                   for mode in _modes(args)]
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
