"""Incremental ingest on the real model and the real index: nothing stale, nothing re-embedded
without need, and a manifest that refuses what it was not built with."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from qa_bot.config import ChunkingSettings, ModelSettings
from qa_bot.index import IndexMismatch, IndexStore
from qa_bot.ingest import Ingestor
from qa_bot.service import QAService
from tests.conftest import SEED_ISSUE, make_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def index_dir(tmp_path, seed_index_dir):
    """A private copy of the seed index that a test may change."""
    target = tmp_path / "index"
    shutil.copytree(seed_index_dir, target)
    return target


def ingestor(index_dir, embedder, **overrides):
    return Ingestor(make_settings(index_dir, **overrides), embedder, show_progress=False)


def test_same_file_twice_changes_nothing(index_dir, embedder):
    store = IndexStore(index_dir)
    before = store.current_name()
    report = ingestor(index_dir, embedder).ingest([SEED_ISSUE])
    assert not report.changed
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 0, 10, 0)
    assert report.chunks_embedded == 0
    assert "nothing changed" in report.summary()
    assert store.current_name() == before


def test_changed_article_replaces_its_chunks(index_dir, embedder, tmp_path):
    edited = tmp_path / SEED_ISSUE.name  # same file name = same issue
    edited.write_text(
        SEED_ISSUE.read_text(encoding="utf-8").replace("再生金属企业13家", "再生金属企业15家"),
        encoding="utf-8",
    )
    old = IndexStore(index_dir).load()
    old_ids = {
        int(i) for i, c in zip(old.ids, old.chunks, strict=True) if "再生金属企业13家" in c.text
    }
    report = ingestor(index_dir, embedder).ingest([edited])
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 9, 0)
    new = IndexStore(index_dir).load()
    article_chunks = [c for c in new.chunks if "再生金属" in c.title]
    assert report.chunks_embedded == len(article_chunks)
    assert len(new) == len(old)
    assert not any("再生金属企业13家" in c.text for c in new.chunks)
    assert not old_ids & {int(i) for i in new.ids}

    service = QAService(make_settings(index_dir), embedder=embedder)
    answer = service.answer("广灵经开区有多少家再生金属企业？")
    assert "15家" in answer.sentence.text
    for hit in service.answer("再生金属企业13家", k=10).passages:
        assert "再生金属企业13家" not in hit.chunk.text


def test_article_dropped_from_issue_and_issue_removed(index_dir, embedder, tmp_path):
    text = SEED_ISSUE.read_text(encoding="utf-8")
    cut = text.index("祁县经济开发区纪检监察工委")
    shorter = tmp_path / SEED_ISSUE.name
    shorter.write_text(text[:cut] + text[text.index("长治经济技术开发区"):], encoding="utf-8")
    second = tmp_path / "bulletin-2023-07.jsonl"
    second.write_text(json.dumps({
        "id": "2023-07-01", "title": "太原经开区新引进半导体企业三家", "zone": "太原经济技术开发区",
        "byline": "张三", "text": "本刊讯 7月3日，太原经济技术开发区新引进半导体企业3家。",
    }, ensure_ascii=False) + "\n", encoding="utf-8")

    report = ingestor(index_dir, embedder).ingest([shorter, second])
    assert (report.added, report.removed, report.unchanged) == (1, 1, 9)
    snapshot = IndexStore(index_dir).load()
    assert not any("酒驾" in c.text for c in snapshot.chunks)
    assert {c.issue for c in snapshot.chunks} == {"bulletin-2023-06", "bulletin-2023-07"}

    service = QAService(make_settings(index_dir), embedder=embedder)
    answer = service.answer("太原经开区今年引进了几家半导体企业？")
    assert answer.sentence is not None
    assert answer.sentence.chunk.zone == "太原经济技术开发区"
    assert answer.sentence.chunk.byline == "张三"

    removal = ingestor(index_dir, embedder).remove_issue("bulletin-2023-07")
    assert removal.removed == 1
    snapshot = IndexStore(index_dir).load()
    assert {c.issue for c in snapshot.chunks} == {"bulletin-2023-06"}
    assert "bulletin-2023-07" not in snapshot.manifest.issues
    with pytest.raises(KeyError, match="no issue"):
        ingestor(index_dir, embedder).remove_issue("bulletin-2023-07")


def test_manifest_refuses_another_model_and_chunker(index_dir, embedder):
    other_model = make_settings(index_dir, model=ModelSettings(name="some-org/another-model"))
    with pytest.raises(IndexMismatch, match="qa-bot rebuild"):
        QAService(other_model, embedder=embedder).warm_up()
    other_prompts = make_settings(index_dir, model=replace(
        make_settings(index_dir).model, query_prompt=""))
    with pytest.raises(IndexMismatch, match="prompts"):
        QAService(other_prompts, embedder=embedder).warm_up()
    with pytest.raises(IndexMismatch, match="qa-bot rebuild"):
        ingestor(index_dir, embedder, chunking=ChunkingSettings(max_tokens=120)).ingest(
            [SEED_ISSUE])


def test_rebuild_reembeds_everything_with_the_new_chunker(index_dir, embedder):
    settings = make_settings(index_dir, chunking=ChunkingSettings(max_tokens=120))
    report = Ingestor(settings, embedder, show_progress=False).rebuild()
    snapshot = IndexStore(index_dir).load()
    assert report.chunks_embedded == len(snapshot) > 35
    assert snapshot.manifest.chunker["max_tokens"] == 120
    assert len(snapshot.articles) == 10
    answer = QAService(settings, embedder=embedder).answer("丁小强要求用好多少种招商模式？")
    assert "12种" in answer.sentence.text


def test_manifest_records_what_built_the_index(seed_index_dir, embedder):
    manifest = IndexStore(seed_index_dir).read_manifest()
    assert manifest.model["name"] == "bundled:multilingual-e5-small"
    assert manifest.model["fingerprint"] == embedder.fingerprint()
    assert manifest.model["dimension"] == 384
    assert manifest.model["query_prompt"] == "query: "
    assert manifest.chunker == {"max_tokens": 200, "overlap_sentences": 1}
    assert manifest.lexical["signature"].startswith("jieba-search-v")
    assert len(manifest.articles) == 10
    assert all(len(entry["hash"]) == 16 and entry["chunk_ids"]
               for entry in manifest.articles.values())
