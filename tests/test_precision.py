"""[model] precision: an index embedded at one precision is refused at the other until rebuild,
and int8 retrieves what fp32 does on the seed issue."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from qa_bot.embedding import SentenceTransformerEmbedder
from qa_bot.index import IndexMismatch, IndexStore, recorded_precision
from qa_bot.ingest import Ingestor
from qa_bot.service import QAService
from tests.conftest import SEED_ISSUE, make_settings

pytestmark = pytest.mark.slow

QUESTIONS = [
    "广灵经开区有多少家再生金属企业？",
    "侯马经开区的调度会由谁主持？",
    "上党经开区的陈华一行去哪里考察学习？",
    "祁县经济开发区党员干部共签订了多少份承诺书？",
    "丁小强要求用好多少种招商模式？",
    "哪个开发区发展再生金属产业？",
    "运城经开区调研了哪些重点项目？",
]


def _top_articles(service: QAService, mode: str) -> list[list[str]]:
    return [
        [hit.chunk.article_id for hit in service.answer(q, k=3, mode=mode).passages]
        for q in QUESTIONS
    ]


def test_a_precision_change_is_refused_until_rebuild(seed_index_dir, seed_service, tmp_path):
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    fp32 = make_settings(index_dir)
    assert recorded_precision(IndexStore(index_dir).read_manifest().model) == "fp32"
    int8 = replace(fp32, model=replace(fp32.model, precision="int8"))
    embedder = SentenceTransformerEmbedder(int8.model, show_progress=False)

    with pytest.raises(IndexMismatch, match=r"precision fp32 \(config: int8\).*qa-bot rebuild"):
        QAService(int8, embedder=embedder).warm_up()
    with pytest.raises(IndexMismatch, match="qa-bot rebuild"):
        Ingestor(int8, embedder, show_progress=False).ingest([SEED_ISSUE])

    report = Ingestor(int8, embedder, show_progress=False).rebuild()
    assert report.chunks_embedded == report.chunks_total > 0
    assert IndexStore(index_dir).read_manifest().model["precision"] == "int8"
    service = QAService(int8, embedder=embedder)
    service.warm_up()
    # Retrieval holds at int8: the same first article for every question, dense alone too.
    for mode in ("hybrid", "dense"):
        ours = _top_articles(service, mode)
        theirs = _top_articles(seed_service, mode)
        assert [r[0] for r in ours] == [r[0] for r in theirs], mode
    with pytest.raises(IndexMismatch, match=r"precision int8 \(config: fp32\)"):
        QAService(fp32).warm_up()
