"""A lean BERT sentence encoder: `tokenizers` + safetensors + numpy, no torch.

The bundled model (multilingual-e5-small converted by `model_convert`) is a plain
sentence-transformers folder: a BERT encoder, mean pooling, L2 normalisation. Loading it through
sentence-transformers costs seconds of imports (torch, transformers, scikit-learn, scipy) before
the first question can be answered; the forward pass itself is twelve small layers of matrix
products. This module runs that forward pass in numpy on the same weights, so `qa-bot ask`
starts in a fraction of the time and a question costs the same. Vectors agree with
sentence-transformers' to float32 precision (tests/test_encoder.py checks it).

Only folders of exactly that shape are handled here (`supports()`); anything else goes through
sentence-transformers as before.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from pathlib import Path

import numpy as np

_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32}


class UnsupportedModel(Exception):
    """The folder is not a BERT + mean pooling (+ normalize) sentence-transformers model."""


def supports(folder: Path) -> bool:
    try:
        _read_layout(Path(folder))
    except (UnsupportedModel, OSError, ValueError, KeyError):
        return False
    return True


def _read_layout(folder: Path) -> dict:
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if types not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        raise UnsupportedModel(f"modules {types}")
    if modules[0].get("path", ""):
        raise UnsupportedModel("transformer module not at the folder root")
    pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    if pooling.get("pooling_mode", "mean") != "mean" or not pooling.get("include_prompt", True):
        raise UnsupportedModel(f"pooling {pooling}")
    for key in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_lasttoken"):
        if pooling.get(key):
            raise UnsupportedModel(f"pooling {key}")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise UnsupportedModel(f"model_type {config.get('model_type')}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("relative position embeddings")
    st_config_path = folder / "sentence_bert_config.json"
    st_config = (
        json.loads(st_config_path.read_text(encoding="utf-8")) if st_config_path.exists() else {}
    )
    if st_config.get("do_lower_case"):
        raise UnsupportedModel("do_lower_case")
    if not (folder / "tokenizer.json").is_file() or not (folder / "model.safetensors").is_file():
        raise UnsupportedModel("needs tokenizer.json and model.safetensors")
    max_length = min(
        int(st_config.get("max_seq_length") or config["max_position_embeddings"]),
        int(config["max_position_embeddings"]),
    )
    return {
        "config": config,
        "normalize": len(types) == 3,
        "max_length": max_length,
    }


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only numpy view of a memory map (no copy)."""
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_size)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])  # bf16 has no numpy type
        if dtype is None:
            raise UnsupportedModel(f"{path}: tensor {name} has dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        tensors[name] = data[start:end].view(dtype).reshape(entry["shape"])
    return tensors


class BertEncoder:
    """Tokenise, run BERT, mean-pool and normalise, all in numpy."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        layout = _read_layout(folder)
        config = layout["config"]
        self.folder = folder
        self.normalize = layout["normalize"]
        self.max_length = layout["max_length"]
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.pad_id = int(config.get("pad_token_id", 0) or 0)
        # The tokenizer (a 17 MB JSON vocabulary) is the slowest part of loading; it is parsed
        # in Rust, which lets other threads run, so it loads while the caller goes on (reading
        # the index, jieba's dictionary) and is waited for on first use.
        self._tokenizer = None
        self._tokenizer_error: Exception | None = None
        self._tokenizer_thread = threading.Thread(
            target=self._load_tokenizer, name="qa-bot-tokenizer", daemon=True
        )
        self._tokenizer_thread.start()
        weights = read_safetensors(folder / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def get(name: str) -> np.ndarray:
            return np.asarray(weights[prefix + name], dtype=np.float32)

        # The word table stays a memory map (fp16 here): only the rows a text uses are read.
        self._word = weights[prefix + "embeddings.word_embeddings.weight"]
        self._position = get("embeddings.position_embeddings.weight")
        self._token_type = get("embeddings.token_type_embeddings.weight")[0]
        self._embedding_norm = (
            get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias")
        )
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            attention = p + "attention."
            self._layers.append((
                # Query, key and value in one product; weights transposed once to (in, out).
                np.ascontiguousarray(np.concatenate(
                    [get(f"{attention}self.{n}.weight") for n in ("query", "key", "value")]
                ).T),
                np.concatenate(
                    [get(f"{attention}self.{n}.bias") for n in ("query", "key", "value")]
                ),
                np.ascontiguousarray(get(attention + "output.dense.weight").T),
                get(attention + "output.dense.bias"),
                get(attention + "output.LayerNorm.weight"),
                get(attention + "output.LayerNorm.bias"),
                np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
                get(p + "intermediate.dense.bias"),
                np.ascontiguousarray(get(p + "output.dense.weight").T),
                get(p + "output.dense.bias"),
                get(p + "output.LayerNorm.weight"),
                get(p + "output.LayerNorm.bias"),
            ))

    def _load_tokenizer(self) -> None:
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.enable_truncation(self.max_length)
            self._tokenizer = tokenizer
        except Exception as exc:  # reported to whoever needs the tokenizer
            self._tokenizer_error = exc

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer_thread.join()
            if self._tokenizer is None:
                raise UnsupportedModel(
                    f"{self.folder / 'tokenizer.json'}: cannot be loaded ({self._tokenizer_error})"
                )
        return self._tokenizer

    @property
    def dimension(self) -> int:
        return self.hidden

    # -- tokens -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    # -- vectors ------------------------------------------------------------------------------
    def encode(self, texts: list[str], batch_size: int = 32, progress=None) -> np.ndarray:
        """Normalised embeddings, computed in batches of similar length (little padding)."""
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.embed_ids([ids[i] for i in rows])
            if progress is not None:
                progress(len(rows))
        return out

    def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int64, count=len(batch))
        width = int(lengths.max())
        token_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
        mask = np.arange(width)[None, :] < lengths[:, None]
        hidden = self._forward(token_ids, mask)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / lengths[:, None].astype(np.float32)
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)

    def _forward(self, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, width = token_ids.shape
        heads, size = self.heads, self.hidden // self.heads
        x = self._word[token_ids].astype(np.float32)
        x += self._position[:width]
        x += self._token_type
        x = x.reshape(batch * width, self.hidden)
        x = _layer_norm(x, *self._embedding_norm, self.eps)
        # Padding keys get -inf-like scores; rows of full sequences need no mask at all.
        key_bias = None
        if not mask.all():
            key_bias = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(size))
        for qkv_w, qkv_b, ao_w, ao_b, an_w, an_b, fi_w, fi_b, fo_w, fo_b, on_w, on_b in (
            self._layers
        ):
            qkv = x @ qkv_w
            qkv += qkv_b
            qkv = qkv.reshape(batch, width, 3, heads, size).transpose(2, 0, 3, 1, 4)
            query = np.ascontiguousarray(qkv[0])
            query *= scale
            key = np.ascontiguousarray(qkv[1])
            value = np.ascontiguousarray(qkv[2])
            scores = query @ key.transpose(0, 1, 3, 2)
            if key_bias is not None:
                scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * width, self.hidden)
            attended = context @ ao_w
            attended += ao_b
            attended += x
            x = _layer_norm(attended, an_w, an_b, self.eps)
            inner = x @ fi_w
            inner += fi_b
            _gelu_inplace(inner)
            out = inner @ fo_w
            out += fo_b
            out += x
            x = _layer_norm(out, on_w, on_b, self.eps)
        return x.reshape(batch, width, self.hidden)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    variance = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x *= 1.0 / np.sqrt(variance + np.float32(eps))
    x *= weight
    x += bias
    return x


def _gelu_inplace(x: np.ndarray) -> None:
    """Exact (erf) GELU, in place: 0.5·x·(1 + erf(x/√2)).

    numpy has no erf, and scipy's costs 0.6 s to import; this is Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7, below float32 resolution at the scale of BERT's activations).
    """
    magnitude = np.abs(x)
    z = magnitude * np.float32(1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * np.float32(1.061405429)
    poly += np.float32(-1.453152027)
    poly *= t
    poly += np.float32(1.421413741)
    poly *= t
    poly += np.float32(-0.284496736)
    poly *= t
    poly += np.float32(0.254829592)
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # = 1 - erf(|x|/√2)
    # x ≥ 0: 0.5·x·(2 - poly) = x - 0.5·|x|·poly;  x < 0: 0.5·x·poly = 0 - 0.5·|x|·poly
    poly *= magnitude
    poly *= np.float32(0.5)
    np.maximum(x, 0, out=x)
    x -= poly
