"""Dense embeddings behind a small protocol, with sentence-transformers as the backend.

Construction is cheap (settings only); `warm_up()` loads the model — the Haystack pattern — so
commands that need no model (stats, an ingest where nothing changed) never pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from qa_bot.config import ModelSettings

log = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"


class ModelError(Exception):
    """The embedding model cannot be found or loaded; the message says what to do."""


class Embedder(Protocol):
    name: str

    def warm_up(self) -> None: ...

    @property
    def dimension(self) -> int: ...

    def fingerprint(self) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; vectors are L2-normalised so inner product = cosine."""

    def __init__(self, settings: ModelSettings, show_progress: bool = True) -> None:
        self.settings = settings
        self.name = settings.name
        self.show_progress = show_progress
        self._model = None
        self._path: Path | None = None
        self._fingerprint: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._model is not None:
            return
        self._configure_threads()
        self._path = self._resolve_path()
        # Imported here: torch + transformers take seconds, and most commands never need them.
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # The per-tensor "Loading weights" bar is noise on every start; ours cover real work.
        transformers_logging.disable_progress_bar()
        source = str(self._path) if self._path else self.name
        log.info("loading embedding model %s", source)
        try:
            self._model = SentenceTransformer(source, device=self.settings.device)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load embedding model {self.name!r} ({exc}). Set [model] name in "
                "config/qa-bot.toml (or QA_BOT_MODEL_NAME) to a local sentence-transformers "
                f"folder, a hub name reachable from here, or {BUNDLED_PREFIX}multilingual-e5-small"
            ) from exc

    def _configure_threads(self) -> None:
        threads = self.settings.threads or os.cpu_count() or 1
        import torch

        torch.set_num_threads(threads)

    def _resolve_path(self) -> Path | None:
        if self.name.startswith(BUNDLED_PREFIX):
            from qa_bot.model_convert import (
                BUNDLED_MODEL,
                WeightsFormatError,
                ensure_bundled_model,
            )

            if self.name != BUNDLED_MODEL:
                raise ModelError(
                    f"unknown bundled model {self.name!r}; the bundled one is {BUNDLED_MODEL!r}"
                )
            try:
                return ensure_bundled_model(
                    Path(self.settings.cache_dir).expanduser(), show_progress=self.show_progress
                )
            except (FileNotFoundError, WeightsFormatError) as exc:
                raise ModelError(str(exc)) from exc
        candidate = Path(self.name).expanduser()
        return candidate if candidate.exists() else None

    @property
    def model(self):
        if self._model is None:
            self.warm_up()
        return self._model

    # -- facts about the model ---------------------------------------------------------------
    @property
    def dimension(self) -> int:
        # sentence-transformers 6 renamed the getter; accept both spellings.
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None)
        return int(getter() if getter else model.get_sentence_embedding_dimension())

    def fingerprint(self) -> str:
        """Hash of the weights, so an index built by other weights under the same name is caught."""
        if self._fingerprint is None:
            model = self.model
            if self._path is not None and self._path.is_dir():
                self._fingerprint = _fingerprint_folder(self._path)
            else:
                self._fingerprint = _fingerprint_tensors(model)
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- work ----------------------------------------------------------------------------------
    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.settings.query_prompt, show_progress=False)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.settings.passage_prompt, show_progress=show_progress)

    def _encode(self, texts: list[str], prompt: str, show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers sorts by length inside encode, so batches are evenly padded.
        vectors = self.model.encode(
            texts,
            prompt=prompt or None,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _fingerprint_folder(folder: Path) -> str:
    """sha256 over the weight files, cached beside them keyed by size and mtime."""
    weight_files = sorted(
        p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt"} and p.is_file()
    )
    if not weight_files:
        raise ModelError(f"{folder}: no weight files (*.safetensors, *.bin) found")
    stamp = [
        [str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in weight_files
    ]
    cache = folder / ".qa-bot-fingerprint.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == stamp:
            return cached["fingerprint"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for path in weight_files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    fingerprint = "sha256:" + digest.hexdigest()[:24]
    # A read-only model folder just means hashing again next time.
    with contextlib.suppress(OSError):
        cache.write_text(json.dumps({"stamp": stamp, "fingerprint": fingerprint}))
    return fingerprint


def _fingerprint_tensors(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:24]
