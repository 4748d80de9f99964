"""Shared fixtures. Tests never reach a model hub: everything they load is local."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Read by huggingface_hub when it is first imported, so it must be set before any test imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """The bundled multilingual-e5-small converted to a sentence-transformers folder.

    Built once into the user cache (or $QA_BOT_MODEL_CACHE) and reused by later sessions.
    """
    from qa_bot.model_convert import ensure_bundled_model

    cache_dir = Path(os.environ.get("QA_BOT_MODEL_CACHE", "~/.cache/qa-bot/models")).expanduser()
    return ensure_bundled_model(cache_dir, show_progress=False)


# -- the real pipeline over the seed issue, built once per test session ------------------------
REPO_ROOT = Path(__file__).resolve().parent.parent
SEED_ISSUE = REPO_ROOT / "corpus" / "bulletin-2023-06.txt"


def make_settings(index_dir: Path, **overrides):
    """Settings for a test: defaults, the shared model cache, and an index dir of its own."""
    from dataclasses import replace

    from qa_bot.config import ModelSettings, ReaderSettings, Settings

    cache_dir = os.environ.get("QA_BOT_MODEL_CACHE", "~/.cache/qa-bot/models")
    settings = Settings(
        index_dir=str(index_dir),
        zone_aliases=str(REPO_ROOT / "config" / "zones.toml"),
        model=ModelSettings(cache_dir=cache_dir),
        # The span reader is a real part of the answer path; tests of other parts (fake
        # embedders, faults) leave it out, the seed service and reader tests turn it on.
        reader=ReaderSettings(enabled=False),
    )
    return replace(settings, **overrides) if overrides else settings


@pytest.fixture(scope="session")
def embedder(bundled_model_dir):
    """The real bundled model, loaded once for the whole session."""
    from qa_bot.embedding import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder(make_settings(Path("unused")).model, show_progress=False)
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, embedder) -> Path:
    """An index of the seed issue. Read-only for tests: copy it before changing it."""
    from qa_bot.ingest import Ingestor

    index_dir = tmp_path_factory.mktemp("seed-index")
    report = Ingestor(make_settings(index_dir), embedder, show_progress=False).ingest([SEED_ISSUE])
    assert report.added == 10 and not report.errors
    return index_dir


@pytest.fixture(scope="session")
def seed_service(seed_index_dir, embedder):
    from qa_bot.config import ReaderSettings
    from qa_bot.service import QAService

    service = QAService(make_settings(seed_index_dir, reader=ReaderSettings()), embedder=embedder)
    service.warm_up()
    return service
