"""train-answer's fitting on hand-made samples: no index, no model."""

import random

from qa_bot.answer import CONFIDENCE_FEATURES, FEATURES, AnswerModel
from qa_bot.answer_training import ANSWERED_TARGET, Sample, fit, split_of
from qa_bot.evaluate import Question


def _samples(count: int, seed: int = 3) -> list[Sample]:
    """Windows hold the answer exactly when their bigram overlap is high; answerable questions
    have high article coverage, the negatives low."""
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        sample = Sample("held-out" if i % 5 == 0 else "train", answerable=i % 4 != 0)
        for _ in range(8):
            label = rng.random() < 0.2
            features = {name: rng.random() for name in FEATURES}
            features["bigram"] = 0.7 + 0.3 * rng.random() if label else 0.5 * rng.random()
            sample.window_features.append([features[name] for name in FEATURES])
            sample.window_labels.append(int(label))
        row = {name: rng.random() * 0.3 for name in CONFIDENCE_FEATURES}
        row["article_coverage"] = 0.6 + 0.4 * rng.random() if sample.answerable else \
            0.4 * rng.random()
        sample.confidence_rows.append(
            ([row[name] for name in CONFIDENCE_FEATURES], int(sample.answerable)))
        samples.append(sample)
    return samples


def test_fit_learns_what_tells_answer_windows_and_answerable_questions_apart():
    model, threshold, report = fit(_samples(200), seed=13)
    weights = model.window_weights
    assert weights["bigram"] == max(weights.values())
    assert model.confidence_weights["article_coverage"] == max(model.confidence_weights.values())
    assert report["held_out"]["window_top1_learned"] >= report["held_out"]["window_top1_hand_set"]
    assert report["held_out"]["answered_rate"] >= ANSWERED_TARGET - 0.05
    assert report["held_out"]["decline_rate_negatives"] > 0.8
    assert 0 < threshold < 1


def test_fitting_is_reproducible():
    first = fit(_samples(120), seed=13)
    second = fit(_samples(120), seed=13)
    assert first[0] == second[0] and first[1] == second[1]


def test_the_split_is_by_gold_article_never_by_question():
    def question(text, title):
        return Question(text, frozenset(), title, ("x",), 1)

    same_article = {split_of(question(f"问题{i}？", "同一篇文章"), 0.5) for i in range(20)}
    assert len(same_article) == 1
    articles = {split_of(question("问题？", f"文章{i}"), 0.5) for i in range(40)}
    assert articles == {"train", "held-out"}


def test_a_learned_model_loads_back(tmp_path):
    from qa_bot.answer_training import save

    model, threshold, report = fit(_samples(80), seed=13)
    path = tmp_path / "answer_model.json"
    save(model, threshold, report, path)
    loaded = AnswerModel.load(path)
    assert loaded.window_weights == model.window_weights
    assert loaded.min_confidence == threshold and loaded.logistic
