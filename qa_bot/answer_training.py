"""`qa-bot train-answer`: learn the answer stage's window weights and confidence from dev data.

For every question of the given sets the real retrieval runs over an index of its corpus; the
answer windows of the top articles get their features (qa_bot/answer.py) and a label: the window
is from the gold article and holds a gold answer. Two logistic regressions (scikit-learn) learn

- the window weights: which window holds the answer (pointwise, over all candidate windows);
- with the span reader loaded, how much its score adds among the windows it reads;
- the confidence: answer or decline. Positives are answerable questions; negatives are the sets'
  unanswerable questions and, so that there are enough of them, answerable questions asked with
  their gold article taken out of the hits — the corpus then truly lacks the answer.

Questions are split by their gold article or passage (a stable hash), never by question: the
held-out share is reported, and the threshold that answers ≥ 97 % of answerable training
questions is written with the weights. Fixed seeds; data paths are arguments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from qa_bot.answer import CONFIDENCE_FEATURES, FEATURES, AnswerModel, Evidence
from qa_bot.config import Settings
from qa_bot.evaluate import Question, is_gold, load_questions
from qa_bot.question import analyse

log = logging.getLogger(__name__)

ANSWERED_TARGET = 0.97  # share of answerable questions the confidence threshold keeps answering


@dataclass
class Sample:
    """One question's candidate windows and evidence, ready for fitting."""

    split: str  # "train" or "held-out"
    answerable: bool
    # From a set with unanswerable questions: only such sets teach what to decline (a set of
    # Wikipedia paragraphs without any would teach that "unrelated text" is all there is).
    teaches_declining: bool = True
    window_features: list[list[float]] = field(default_factory=list)
    window_labels: list[int] = field(default_factory=list)
    # (window features, reader score, label) of the windows the reader read
    reader_pairs: list[tuple[list[float], float, int]] = field(default_factory=list)
    confidence_rows: list[tuple[list[float], int]] = field(default_factory=list)


def split_of(question: Question, held_out_share: float) -> str:
    """Stable split by the gold article (ids or title), never by question."""
    key = ",".join(sorted(question.gold_ids)) or question.gold_title or question.text
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "held-out" if bucket < held_out_share else "train"


def collect(
    service, questions: list[Question], held_out_share: float, teaches_declining: bool = True
) -> list[Sample]:
    loaded = service.loaded
    answerer = loaded.answerer
    articles = loaded.snapshot.articles
    samples = []
    for question in questions:
        frame = analyse(question.text)
        hits = loaded.retriever.search(question.text, k=10)
        sample = Sample(split_of(question, held_out_share), question.answerable,
                        teaches_declining)
        candidates = answerer.candidates(frame, hits, articles)
        for candidate in candidates:
            label = _holds_answer(question, candidate)
            sample.window_features.append([candidate.features[name] for name in FEATURES])
            sample.window_labels.append(label)
        if answerer.reader is not None and candidates:
            head = sorted(candidates, key=lambda c: c.score, reverse=True)[
                : answerer.settings.reader_windows]
            readings = {r.context: r for r in answerer.reader.read(
                frame.text, [c.text for c in head])}
            for index, candidate in enumerate(head):
                reading = readings.get(index)
                label = _holds_answer(question, candidate)
                sample.reader_pairs.append((
                    [candidate.features[name] for name in FEATURES],
                    reading.score if reading else -10.0, label))
        samples.append(sample)
        if not teaches_declining:
            continue  # its confidence rows would not be used: spare the reader's time
        sample.confidence_rows.append((_confidence_row(answerer, frame, hits, articles),
                                       int(question.answerable)))
        if question.answerable:
            # The same question with its article gone: what the bot sees when the corpus lacks it.
            others = [h for h in hits if not is_gold(question, h.chunk.article_id, h.chunk.title)]
            if others:
                sample.confidence_rows.append((_confidence_row(answerer, frame, others, articles),
                                               0))
    return samples


def _holds_answer(question: Question, candidate) -> int:
    """1 when the window is from the gold article and holds a gold answer."""
    chunk = candidate.hit.chunk
    return int(
        question.answerable
        and is_gold(question, chunk.article_id, chunk.title)
        and any(gold in candidate.text for gold in question.answers or ())
    )


def _confidence_row(answerer, frame, hits, articles) -> list[float]:
    evidence: Evidence | None = answerer.choose(frame, answerer.candidates(frame, hits, articles))
    if evidence is None:
        return [0.0] * len(CONFIDENCE_FEATURES)
    values = answerer.confidence_evidence(evidence, hits)
    return [values[name] for name in CONFIDENCE_FEATURES]


def fit(samples: list[Sample], seed: int) -> tuple[AnswerModel, float, dict]:
    from sklearn.linear_model import LogisticRegression

    train = [s for s in samples if s.split == "train"]
    x = np.array([f for s in train for f in s.window_features])
    y = np.array([label for s in train for label in s.window_labels])
    windows = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, y)
    window_weights = dict(zip(FEATURES, (float(w) for w in windows.coef_[0]), strict=True))

    reader_weight = 0.0
    pairs = [p for s in train for p in s.reader_pairs]
    if pairs:
        model_without_reader = AnswerModel(window_weights=window_weights)
        xr = np.array([
            [model_without_reader.window_score(dict(zip(FEATURES, f, strict=True))), r]
            for f, r, _ in pairs])
        yr = np.array([label for _, _, label in pairs])
        stage = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(xr, yr)
        # Scale so the window score keeps its own units: reader weight relative to it.
        reader_weight = float(stage.coef_[0][1] / max(stage.coef_[0][0], 1e-6))

    rows = [r for s in train if s.teaches_declining for r in s.confidence_rows]
    xc = np.array([r for r, _ in rows])
    yc = np.array([label for _, label in rows])
    confidence = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(xc, yc)
    model = AnswerModel(
        window_weights=window_weights,
        reader_weight=reader_weight,
        confidence_weights=dict(zip(CONFIDENCE_FEATURES,
                                    (float(w) for w in confidence.coef_[0]), strict=True)),
        confidence_bias=float(confidence.intercept_[0]),
        logistic=True,
    )
    # The threshold that still answers ANSWERED_TARGET of the real answerable training questions.
    positives = sorted(
        model.confidence(dict(zip(CONFIDENCE_FEATURES, s.confidence_rows[0][0], strict=True)))
        for s in train if s.answerable and s.teaches_declining
    )
    threshold = positives[int((1 - ANSWERED_TARGET) * len(positives))] if positives else 0.5
    held_out = [s for s in samples if s.split == "held-out"]
    report = {
        "held_out": {
            "window_top1_hand_set": _window_top1(held_out, AnswerModel()),
            "window_top1_learned": _window_top1(held_out, model),
            **_decline_rates([s for s in held_out if s.teaches_declining], model, threshold),
        },
        "train_questions": len(train),
        "held_out_questions": len(samples) - len(train),
        "window_rows": len(y),
        "confidence_rows": len(yc),
        "reader_rows": len(pairs),
    }
    return model, threshold, report


def _window_top1(samples: list[Sample], model: AnswerModel) -> float | None:
    """Share of answerable questions whose best-scored window holds the answer."""
    scored = [s for s in samples if s.answerable and s.window_features]
    if not scored:
        return None
    right = 0
    for sample in scored:
        scores = [model.window_score(dict(zip(FEATURES, f, strict=True)))
                  for f in sample.window_features]
        right += sample.window_labels[int(np.argmax(scores))]
    return round(right / len(scored), 4)


def _decline_rates(samples: list[Sample], model: AnswerModel, threshold: float) -> dict:
    """Answered share of answerable questions; declined share of the negatives (unanswerable
    questions and answerable ones asked without their article)."""
    answered = declined = positives = negatives = 0
    for sample in samples:
        for row, label in sample.confidence_rows:
            confident = model.confidence(dict(zip(CONFIDENCE_FEATURES, row, strict=True))) \
                >= threshold
            if label:
                positives += 1
                answered += confident
            else:
                negatives += 1
                declined += not confident
    return {
        "answered_rate": round(answered / positives, 4) if positives else None,
        "decline_rate_negatives": round(declined / negatives, 4) if negatives else None,
    }


def save(model: AnswerModel, threshold: float, report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "window_weights": model.window_weights,
        "reader_weight": model.reader_weight,
        "confidence_weights": model.confidence_weights,
        "confidence_bias": model.confidence_bias,
        "min_confidence": threshold,
        "trained_on": report,
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def run_train_command(args, settings: Settings) -> int:
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.index import IndexStore
    from qa_bot.ingest import Ingestor
    from qa_bot.service import QAService

    random.seed(args.seed)
    np.random.seed(args.seed)
    embedder = SentenceTransformerEmbedder(settings.model, show_progress=True)
    samples: list[Sample] = []
    for spec in args.set:
        questions_path, _, corpus = spec.partition("=")
        if not corpus:
            print(f"qa-bot: error: --set {spec!r}: write QUESTIONS.jsonl=CORPUS[,CORPUS…]",
                  file=sys.stderr)
            return 2
        name = Path(questions_path).parent.name or Path(questions_path).stem
        index_dir = Path(args.work_dir) / name
        set_settings = replace(settings, index_dir=str(index_dir))
        store = IndexStore(set_settings.index_path)
        report = Ingestor(set_settings, embedder, store).ingest(
            [Path(p) for p in corpus.split(",")])
        print(report.summary(), file=sys.stderr)
        # Windows are collected with the hand-set weights, so a retrain starts from the same place.
        service = QAService(set_settings, embedder=embedder, store=store,
                            answer_model=AnswerModel())
        service.warm_up()
        questions = load_questions(Path(questions_path))
        teaches = any(not q.answerable for q in questions)
        samples.extend(collect(service, questions, args.held_out, teaches))
        print(f"{questions_path}: {len(questions)} questions collected", file=sys.stderr)
    model, threshold, report = fit(samples, args.seed)
    save(model, threshold, report, Path(args.out))
    print(json.dumps({"out": str(args.out), "min_confidence": threshold, **report},
                     ensure_ascii=False))
    return 0
