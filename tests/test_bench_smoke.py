"""Each benchmark runs end to end at a tiny size. No timing is asserted: benchmarks are never
timed tests; these only keep them runnable. The news benchmark gets a small corpus of its own
(the real news set in ../shared is read only when the benchmark is run by hand)."""

from __future__ import annotations

import json

import pytest

from bench import common


def test_scale_smoke(capsys):
    from bench import scale

    assert scale.main(["--sizes", "300,1500", "--queries", "5", "--kinds", "flat,hnsw,ivf",
                       "--ef-sweep", "32", "--nprobe", "4"]) == 0
    out = capsys.readouterr().out
    assert "cores" in out and "hnsw ef_search=128 (product)" in out and "ivf nprobe=4" in out
    assert "| 1,500" in out and "BM25" in out


def test_synthetic_issues_parse_back(tmp_path):
    from bench.synth import synthetic_articles, write_issues
    from qa_bot.parsing import load_file

    rows = synthetic_articles(45, seed=3)
    assert rows == synthetic_articles(45, seed=3)  # deterministic
    paths = write_issues(tmp_path, rows, fmt="bulletin", include_seed=False)
    parsed = [a for path in paths for a in load_file(path)[0]]
    assert [(a.zone, a.title, a.byline) for a in parsed] == [
        (r["zone"], r["title"], r["byline"]) for r in rows
    ]
    jsonl = write_issues(tmp_path / "jsonl", rows, fmt="jsonl", include_seed=True)
    assert len([a for path in jsonl for a in load_file(path)[0]]) == 45 + 10


def test_machine_header_and_table(capsys):
    common.print_machine("smoke")
    out = capsys.readouterr().out
    assert "cores" in out and "torch" in out and "faiss" in out
    assert common.table([{"a": 1.5, "b": None}]).count("|") == 9
    assert common.percentile([1, 2, 3, 4], 50) == 2.5


@pytest.mark.slow
def test_query_path_smoke(tmp_path, capsys):
    from bench import query_path

    assert query_path.main(["--chunks", "60", "--rounds", "1", "--cold-runs", "1",
                            "--cache-dir", str(tmp_path), "--no-reference",
                            "--json", str(tmp_path / "q.json")]) == 0
    out = capsys.readouterr().out
    assert "ratio answer/encode" in out and "Cold start" in out
    figures = json.loads((tmp_path / "q.json").read_text())
    assert figures["ratio"] > 0 and figures["cold"][0]["first_answer_s_p50"] > 0


@pytest.mark.slow
def test_ingest_path_smoke(capsys):
    from bench import ingest_path

    assert ingest_path.main(["--chunks", "20", "--no-sandwich"]) == 0
    out = capsys.readouterr().out
    assert "ratio ingest/encode throughput" in out and "write snapshot" in out


@pytest.mark.slow
def test_news_corpus_smoke(tmp_path, capsys):
    from bench import news_corpus

    passages = tmp_path / "passages.jsonl"
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"id": f"n{i}", "title": f"新闻{i}", "date": "2023-08-17",
         "text": f"第{i}条新闻。山西省开发区第{i}次召开项目建设调度会，听取重点项目进展情况。"}
        for i in range(6)
    ]
    passages.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    questions.write_text(json.dumps({"question": "第3次调度会听取了什么？", "passage_ids": ["n3"],
                                     "answers": []}, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    assert news_corpus.main(["--passages", str(passages), "--questions", str(questions),
                             "--limit", "6"]) == 0
    out = capsys.readouterr().out
    assert "chunks_per_s" in out and "| hybrid" in out and "| bm25" in out


@pytest.mark.slow
def test_encoders_smoke(tmp_path, capsys):
    from bench import encoders

    assert encoders.main(["--passages", "20", "--rounds", "1", "--cold-runs", "1",
                          "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "Question encode" in out and "Cold start" in out
    figures = json.loads((tmp_path / "e.json").read_text())
    engines = {row["engine"] for row in figures["questions"]}
    assert {"onnxruntime fp32", "onnxruntime int8"} <= engines
    assert all(row["min_cosine"] > 0.98 for row in figures["agreement"])
