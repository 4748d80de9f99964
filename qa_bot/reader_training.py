"""Train the span reader on the dev shares: ``python -m qa_bot.reader_training --out DIR ...``.

One reproducible command (fixed seeds, data paths as arguments). Data: CMRC / DRCD passages
and questions, bulletin questions over their issues (articles found by title). Split by
passage / article (a stable hash of its key: ~80 % train, the rest held out), never by
question. Each question's context is the answer window holding its answer (``answer_windows``,
as the answer stage sees sentences); some windows of the same passage without the answer are
added with the no-answer target (``<s>``), so the no-answer score means something.

The embeddings and lower layers stay frozen: their output is computed once per example and
cached, and only the upper layers + the start/end head are trained (AdamW, linear warm-up
then decay). Writes ``reader.safetensors`` (fp16: the trained layers and head, BertModel names)
and ``reader.json`` (base model fingerprint, layers, data sizes, held-out metrics) into
``--out``; commit them under ``qa_bot/data/reader/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The answer stage's own LCS: span F1 here is CMRC's, computed the way it compares strings.
from qa_bot.answer import answer_windows
from qa_bot.config import AnswerSettings, ModelSettings, ReaderSettings
from qa_bot.evaluate import span_exact_match, span_f1
from qa_bot.model_convert import COMPLETION_MARKER, ensure_bundled_model
from qa_bot.parsing import load_file
from qa_bot.reader import EncodedPair, SpanReader, best_spans, encode_pairs
from qa_bot.reader_export import ARTIFACT_META, ARTIFACT_WEIGHTS

logger = logging.getLogger(__name__)



# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Passage:
    key: str  # "cmrc:DEV_4", "bulletin:issue_E:<title>": the unit of the train/held-out split
    source: str  # cmrc, drcd, bulletin
    text: str


@dataclass(frozen=True)
class Question:
    passage: Passage
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """One (question, context) input with its target: answer characters, or none (-1, -1)."""

    source: str
    question: str
    context: str
    answer_start: int
    answer_end: int
    answers: tuple[str, ...]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def load_reading_set(folder: Path, source: str) -> list[Question]:
    """CMRC / DRCD layout: passages.jsonl {id, text} + questions.jsonl {passage_id, answers}."""
    passages = {
        row["id"]: Passage(f"{source}:{row['id']}", source, row["text"])
        for row in _read_jsonl(folder / "passages.jsonl")
    }
    questions = []
    for row in _read_jsonl(folder / "questions.jsonl"):
        passage = passages.get(row.get("passage_id"))
        answers = tuple(a for a in row.get("answers") or () if a and a.strip())
        if passage is not None and answers and row.get("question"):
            questions.append(Question(passage, row["question"], answers))
    return questions


def _title_key(title: str) -> str:
    return re.sub(r"\s+", "", title)


def load_bulletin_set(questions_file: Path, issue_files: dict[str, Path]) -> list[Question]:
    """Bulletin questions {issue?, title, answers}; the article is found by its title in the
    issue (``issue`` names a file in ``issue_files``; without it, the only file given)."""
    articles: dict[tuple[str, str], Passage] = {}
    for issue, path in issue_files.items():
        for article in load_file(path)[0]:
            key = (issue, _title_key(article.title))
            articles[key] = Passage(f"bulletin:{issue}:{key[1]}", "bulletin", article.text)
    default_issue = next(iter(issue_files)) if len(issue_files) == 1 else None
    questions, unmatched = [], 0
    for row in _read_jsonl(questions_file):
        answers = tuple(a for a in row.get("answers") or () if a and a.strip())
        if not answers or not row.get("question"):
            continue  # unanswerable: nothing to point at
        issue = row.get("issue", default_issue)
        title = _title_key(row.get("title", ""))
        passage = articles.get((issue, title)) or next(
            (p for (i, t), p in articles.items() if i == issue and (title in t or t in title)),
            None,
        )
        if passage is None:
            unmatched += 1
            continue
        questions.append(Question(passage, row["question"], answers))
    if unmatched:
        logger.warning("%s: %d questions whose article was not found", questions_file, unmatched)
    return questions


def is_held_out(passage_key: str, share: float) -> bool:
    """Stable split by passage: the same passage is on the same side in every run."""
    digest = hashlib.sha256(passage_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def gold_window(question: Question, max_chars: int) -> tuple[int, int, int, int] | None:
    """(window start, end, answer start, end) in the passage: the answer window holding an
    occurrence of an answer, the one sharing most bigrams with the question (then shortest)."""
    text = question.passage.text
    question_bigrams = _bigrams(question.question)
    best, best_key = None, None
    windows = answer_windows(text, max_chars)
    for answer in question.answers:
        position = text.find(answer)
        while position >= 0:
            end = position + len(answer)
            for start_w, end_w in windows:
                if start_w <= position and end <= end_w:
                    shared = len(question_bigrams & _bigrams(text[start_w:end_w]))
                    key = (shared, -(end_w - start_w))
                    if best_key is None or key > best_key:
                        best, best_key = (start_w, end_w, position, end), key
            position = text.find(answer, position + 1)
        if best is not None:
            return best  # the first answer found is the target; the others only score
    return None


def build_examples(
    questions: Sequence[Question], max_chars: int, negative_share: float, rng: random.Random
) -> list[Example]:
    examples = []
    for question in questions:
        gold = gold_window(question, max_chars)
        if gold is None:
            continue
        start_w, end_w, start_a, end_a = gold
        text = question.passage.text
        examples.append(
            Example(question.passage.source, question.question, text[start_w:end_w],
                    start_a - start_w, end_a - start_w, question.answers)
        )
        if rng.random() < negative_share:
            without = [
                (s, e) for s, e in answer_windows(text, max_chars)
                if not any(a in text[s:e] for a in question.answers)
            ]
            if without:
                s, e = rng.choice(without)
                examples.append(
                    Example(question.passage.source, question.question, text[s:e], -1, -1,
                            question.answers)
                )
    return examples


def token_targets(pair: EncodedPair, answer_start: int, answer_end: int) -> tuple[int, int] | None:
    """Start and end token of the answer characters; (0, 0) for no answer; None when the
    answer was truncated away."""
    if answer_start < 0:
        return 0, 0
    tokens = [i for i, ok in enumerate(pair.candidate) if ok]
    starts = [i for i in tokens if pair.offsets[i][1] > answer_start]
    ends = [i for i in tokens if pair.offsets[i][0] < answer_end]
    if not starts or not ends or pair.offsets[tokens[-1]][1] < answer_end:
        return None
    start, end = starts[0], ends[-1]
    return (start, end) if start <= end else None


def _scores(prediction: str, answers) -> tuple[float, float]:
    """CMRC span F1 and exact match (qa_bot/evaluate.py: the one implementation)."""
    answers = tuple(answers)
    return span_f1(prediction, answers), float(span_exact_match(prediction, answers))


# --------------------------------------------------------------------------------------------
# Training


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (less padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(rows: list, pad_value, torch):
    longest = max(len(r) for r in rows)
    return [list(r) + [pad_value] * (longest - len(r)) for r in rows], longest


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from qa_bot.reader_network import build_network

        self.torch = torch
        self.args = args
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        self.model_dir = ensure_bundled_model(Path(args.cache_dir).expanduser())
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.network, self.config = build_network(
            self.model_dir, self.config_layers() - args.layers
        )

    def config_layers(self) -> int:
        config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        return int(config["num_hidden_layers"])

    def encode(
        self, examples: Sequence[Example]
    ) -> tuple[list[EncodedPair], list[tuple[int, int]], list[Example]]:
        pairs, targets, kept = [], [], []
        for example in examples:
            pair = encode_pairs(self.tokenizer, example.question, [example.context],
                                self.args.max_tokens)[0]
            target = token_targets(pair, example.answer_start, example.answer_end)
            if target is None:
                continue
            pairs.append(pair)
            targets.append(target)
            kept.append(example)
        return pairs, targets, kept

    def lower_states(self, pairs: Sequence[EncodedPair]) -> list:
        """The frozen layers' output per pair (fp16, unpadded), computed once."""
        torch = self.torch
        self.network.eval()
        states: list = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].input_ids))
        with torch.no_grad():
            for i in range(0, len(order), 32):
                batch = order[i : i + 32]
                ids, mask = self._inputs([pairs[j] for j in batch])
                hidden = self.network.lower(ids, mask)
                for row, j in enumerate(batch):
                    states[j] = hidden[row, : len(pairs[j].input_ids)].to(torch.float16)
        return states

    def _inputs(self, pairs: Sequence[EncodedPair]):
        torch = self.torch
        ids, _ = _pad([p.input_ids for p in pairs], 1, torch)
        mask, _ = _pad([[1] * len(p.input_ids) for p in pairs], 0, torch)
        return torch.tensor(ids), torch.tensor(mask)

    def _stack(self, states: Sequence, pairs: Sequence[EncodedPair]):
        torch = self.torch
        longest = max(s.shape[0] for s in states)
        hidden = torch.zeros(len(states), longest, states[0].shape[1])
        mask = torch.zeros(len(states), longest, dtype=torch.long)
        allowed = torch.zeros(len(states), longest, dtype=torch.bool)
        for row, (state, pair) in enumerate(zip(states, pairs, strict=True)):
            hidden[row, : state.shape[0]] = state.float()
            mask[row, : state.shape[0]] = 1
            allowed[row, : len(pair.candidate)] = torch.tensor(pair.candidate)
            allowed[row, 0] = True  # <s>: the no-answer target
        return hidden, mask, allowed

    def train(self, pairs, targets, states) -> list[float]:
        torch, args = self.torch, self.args
        network = self.network
        first = network.first_trained
        parameters = [p for layer in network.layers[first:] for p in layer.parameters()]
        parameters += list(network.qa.parameters())
        for p in network.parameters():
            p.requires_grad_(False)
        for p in parameters:
            p.requires_grad_(True)
        decay = [p for p in parameters if p.dim() > 1]
        no_decay = [p for p in parameters if p.dim() <= 1]
        optimiser = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr,
        )
        rng = random.Random(args.seed)
        lengths = [len(p.input_ids) for p in pairs]
        steps_per_epoch = len(_batches(lengths, args.batch_size, random.Random(0)))
        total = steps_per_epoch * args.epochs
        warmup = max(1, int(total * args.warmup))
        def warm_up_then_decay(step: int) -> float:
            return min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, warm_up_then_decay)
        losses = []
        step = 0
        started = time.perf_counter()
        for epoch in range(args.epochs):
            network.train()
            epoch_loss, count = 0.0, 0
            for batch in _batches(lengths, args.batch_size, rng):
                hidden, mask, allowed = self._stack([states[i] for i in batch],
                                                    [pairs[i] for i in batch])
                start_logits, end_logits = network.upper(hidden, mask)
                start_logits = start_logits.masked_fill(~allowed, -1e4)
                end_logits = end_logits.masked_fill(~allowed, -1e4)
                gold_start = torch.tensor([targets[i][0] for i in batch])
                gold_end = torch.tensor([targets[i][1] for i in batch])
                loss = (
                    torch.nn.functional.cross_entropy(start_logits, gold_start)
                    + torch.nn.functional.cross_entropy(end_logits, gold_end)
                ) / 2
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimiser.step()
                scheduler.step()
                epoch_loss += loss.item() * len(batch)
                count += len(batch)
                step += 1
                if step % 50 == 0:
                    logger.info("epoch %d step %d/%d loss %.3f (%.0f s)", epoch + 1, step, total,
                                epoch_loss / count, time.perf_counter() - started)
            losses.append(round(epoch_loss / count, 4))
            logger.info("epoch %d done: mean loss %.3f (%.0f s)", epoch + 1, losses[-1],
                        time.perf_counter() - started)
        network.eval()
        return losses

    def logits(self, pairs: Sequence[EncodedPair], states: Sequence | None = None):
        """Start/end logits per pair (numpy rows, unpadded) from the upper layers."""
        torch = self.torch
        if states is None:
            states = self.lower_states(pairs)
        self.network.eval()
        results: list = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].input_ids))
        with torch.no_grad():
            for i in range(0, len(order), 32):
                batch = order[i : i + 32]
                hidden, mask, _ = self._stack([states[j] for j in batch], [pairs[j] for j in batch])
                start, end = self.network.upper(hidden, mask)
                for row, j in enumerate(batch):
                    n = len(pairs[j].input_ids)
                    results[j] = (start[row, :n].numpy(), end[row, :n].numpy())
        return results


def predict(pair: EncodedPair, context: str, logits) -> tuple[str, float]:
    spans = best_spans(logits[0], logits[1], pair.candidate, top=1)
    if not spans:
        return "", float("-inf")
    start, end, score = spans[0]
    return context[pair.offsets[start][0] : pair.offsets[end][1]], score


def evaluate_gold_window(trainer: Trainer, examples: Sequence[Example]) -> dict:
    """Span F1 / EM per source with the gold window given (answerable examples only)."""
    positives = [e for e in examples if e.answer_start >= 0]
    pairs, _, kept = trainer.encode(positives)
    logits = trainer.logits(pairs)
    per_source: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for pair, example, row in zip(pairs, kept, logits, strict=True):
        text, _ = predict(pair, example.context, row)
        scores = _scores(text, example.answers)
        per_source[example.source].append(scores)
        per_source["all"].append(scores)
    return _summarise(per_source)


def evaluate_top_windows(
    trainer: Trainer, questions: Sequence[Question], max_chars: int, windows: int = 3
) -> dict:
    """Span F1 / EM when the reader is given the ``windows`` answer windows of the gold passage
    sharing most bigrams with the question and must also choose among them."""
    per_source: dict[str, list[tuple[float, float]]] = defaultdict(list)
    hits = Counter()
    flat_pairs, owners = [], []
    for q_index, question in enumerate(questions):
        contexts = top_windows(question, max_chars, windows)
        hits[question.passage.source] += any(a in c for c in contexts for a in question.answers)
        for context, pair in zip(
            contexts, encode_pairs(trainer.tokenizer, question.question, contexts,
                                   trainer.args.max_tokens), strict=True
        ):
            flat_pairs.append(pair)
            owners.append((q_index, context))
    logits = trainer.logits(flat_pairs)
    best: dict[int, tuple[float, str]] = {}
    for pair, (q_index, context), row in zip(flat_pairs, owners, logits, strict=True):
        text, score = predict(pair, context, row)
        if q_index not in best or score > best[q_index][0]:
            best[q_index] = (score, text)
    for q_index, question in enumerate(questions):
        text = best.get(q_index, (0.0, ""))[1]
        scores = _scores(text, question.answers)
        per_source[question.passage.source].append(scores)
        per_source["all"].append(scores)
    summary = _summarise(per_source)
    for source, count in hits.items():
        summary[source]["answer_in_windows"] = round(count / len(per_source[source]), 3)
    return summary


def top_windows(question: Question, max_chars: int, count: int) -> list[str]:
    """The ``count`` answer windows of the question's passage sharing most bigrams with it."""
    text = question.passage.text
    question_bigrams = _bigrams(question.question)
    ranked = sorted(
        answer_windows(text, max_chars),
        key=lambda w: -len(question_bigrams & _bigrams(text[w[0] : w[1]])),
    )
    return [text[s:e] for s, e in ranked[:count]]


def evaluate_reader(
    reader: SpanReader, examples: Sequence[Example], questions: Sequence[Question],
    max_chars: int, windows: int = 3,
) -> dict:
    """The same two held-out figures through ``SpanReader`` (the exported ONNX graph)."""
    gold: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for example in (e for e in examples if e.answer_start >= 0):
        spans = reader.read(example.question, [example.context])
        text = example.context[spans[0].start : spans[0].end] if spans else ""
        scores = _scores(text, example.answers)
        gold[example.source].append(scores)
        gold["all"].append(scores)
    top: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if not windows:
        return {"gold_window": _summarise(gold)}
    for question in questions:
        contexts = top_windows(question, max_chars, windows)
        spans = reader.read(question.question, contexts)
        text = contexts[spans[0].context][spans[0].start : spans[0].end] if spans else ""
        scores = _scores(text, question.answers)
        top[question.passage.source].append(scores)
        top["all"].append(scores)
    return {"gold_window": _summarise(gold), f"top{windows}_windows": _summarise(top)}


def _summarise(per_source: dict[str, list[tuple[float, float]]]) -> dict:
    return {
        source: {
            "questions": len(rows),
            "span_f1": round(float(np.mean([f for f, _ in rows])), 3),
            "span_em": round(float(np.mean([e for _, e in rows])), 3),
        }
        for source, rows in sorted(per_source.items())
    }


# --------------------------------------------------------------------------------------------
# Command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa-bot train-reader",
        description="Train the span reader (upper e5 layers + start/end head) on the dev shares.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifacts")
    parser.add_argument("--cmrc", type=Path, help="CMRC folder (passages.jsonl, questions.jsonl)")
    parser.add_argument("--drcd", type=Path, help="DRCD folder (same layout)")
    parser.add_argument("--bulletin", nargs=2, action="append", default=[],
                        metavar=("QUESTIONS", "ISSUE_FILE_OR_DIR"),
                        help="bulletin questions.jsonl and the issue file (or a folder of "
                        "<issue>.md files); repeatable")
    parser.add_argument("--layers", type=int, default=4, help="upper layers trained")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--warmup", type=float, default=0.1, help="share of steps warming up")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=ReaderSettings().max_tokens)
    parser.add_argument("--max-chars", type=int, default=AnswerSettings().max_sentence_chars,
                        help="answer window size, as the answer stage's max_sentence_chars")
    parser.add_argument("--negatives", type=float, default=0.5,
                        help="share of questions that also get a window without the answer")
    parser.add_argument("--held-out", type=float, default=0.2, help="share of passages held out")
    parser.add_argument("--seed", type=int, default=20260607)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="questions per source (smoke runs)")
    parser.add_argument("--top-windows", type=int, default=3,
                        help="also evaluate with this many windows of the gold passage "
                        "(the reader must choose among them); 0 = skip")
    parser.add_argument("--cache-dir", default=ModelSettings().cache_dir)
    parser.add_argument("--evaluate", choices=("fp32", "int8"),
                        help="train nothing: measure the reader already in --out on the "
                        "held-out split through onnxruntime at this precision")
    return parser


def _issue_files(path: Path) -> dict[str, Path]:
    if path.is_dir():
        # Every Markdown file but the folder's README is an issue.
        return {p.stem: p for p in sorted(path.glob("*.md")) if p.stem.lower() != "readme"}
    return {path.stem: path}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,  # under `qa-bot train-reader` the CLI has configured logging already
    )
    started = time.perf_counter()
    random.seed(args.seed)
    np.random.seed(args.seed)
    questions: list[Question] = []
    if args.cmrc:
        questions += load_reading_set(args.cmrc, "cmrc")[: args.limit or None]
    if args.drcd:
        questions += load_reading_set(args.drcd, "drcd")[: args.limit or None]
    for questions_file, issues in args.bulletin:
        questions += load_bulletin_set(Path(questions_file), _issue_files(Path(issues)))
    if not questions:
        logger.error("No questions: give --cmrc, --drcd and/or --bulletin")
        return 2
    train_q = [q for q in questions if not is_held_out(q.passage.key, args.held_out)]
    held_q = [q for q in questions if is_held_out(q.passage.key, args.held_out)]
    rng = random.Random(args.seed)
    train_examples = build_examples(train_q, args.max_chars, args.negatives, rng)
    held_examples = build_examples(held_q, args.max_chars, 0.0, rng)
    if args.evaluate:
        reader = SpanReader(
            ReaderSettings(path=str(args.out), precision=args.evaluate, threads=args.threads,
                           max_tokens=args.max_tokens),
            cache_dir=Path(args.cache_dir).expanduser(),
        )
        figures = evaluate_reader(reader, held_examples, held_q, args.max_chars,
                                  args.top_windows)
        logger.info("held out through onnxruntime %s: %s", args.evaluate, json.dumps(figures))
        print(json.dumps({"precision": args.evaluate, **figures}, indent=2))
        return 0

    trainer = Trainer(args)
    pairs, targets, kept = trainer.encode(train_examples)
    sizes = {
        "questions": dict(Counter(q.passage.source for q in questions)),
        "train_questions": dict(Counter(q.passage.source for q in train_q)),
        "held_out_questions": dict(Counter(q.passage.source for q in held_q)),
        "train_passages": len({q.passage.key for q in train_q}),
        "held_out_passages": len({q.passage.key for q in held_q}),
        "train_examples": len(kept),
        "train_no_answer_examples": sum(1 for e in kept if e.answer_start < 0),
    }
    logger.info("data: %s", json.dumps(sizes, ensure_ascii=False))
    states = trainer.lower_states(pairs)
    logger.info("frozen layers cached (%.0f s)", time.perf_counter() - started)
    losses = trainer.train(pairs, targets, states)
    train_seconds = time.perf_counter() - started

    # Written before the evaluation too, so a run cut short still leaves a usable reader.
    from safetensors.torch import save_file

    from qa_bot.reader_network import trained_state

    state = {k: v.to(trainer.torch.float16).contiguous()
             for k, v in trained_state(trainer.network, trainer.config).items()}
    save_file(state, str(args.out / ARTIFACT_WEIGHTS), metadata={"format": "pt"})
    (args.out / ARTIFACT_WEIGHTS).chmod(0o644)  # safetensors writes it owner-only
    marker = json.loads((trainer.model_dir / COMPLETION_MARKER).read_text(encoding="utf-8"))
    meta = {
        "base_model": trainer.model_dir.name,
        "base_model_sha256": marker["source_sha256"],
        "layers": len(trainer.network.layers),
        "first_trained_layer": trainer.network.first_trained,
        "trained_layers": args.layers,
        "max_tokens": args.max_tokens,
        "max_chars": args.max_chars,
        "pad_id": 1,
        "seed": args.seed,
        "hyperparameters": {k: v for k, v in vars(args).items()
                            if k in ("epochs", "lr", "warmup", "batch_size", "negatives",
                                     "held_out", "threads")},
        "data": sizes,
        "epoch_losses": losses,
        "training_seconds": round(train_seconds),
        "held_out": None,
        "command": "python -m qa_bot.reader_training " + " ".join(sys.argv[1:] if argv is None
                                                                    else argv),
    }
    meta_path = args.out / ARTIFACT_META
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    gold = evaluate_gold_window(trainer, held_examples)
    logger.info("held out, gold window: %s", json.dumps(gold))
    meta["held_out"] = {"gold_window": gold}
    if args.top_windows:
        top = evaluate_top_windows(trainer, held_q, args.max_chars, args.top_windows)
        logger.info("held out, top-%d windows of the gold passage: %s", args.top_windows,
                    json.dumps(top))
        meta["held_out"][f"top{args.top_windows}_windows"] = top
    meta["total_seconds"] = round(time.perf_counter() - started)
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %s (%.0f s in all)", args.out, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
