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

import contextlib
import io
import json
import logging
import math
import os
import re
import struct
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

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


# Characters of Chinese text as the bulletin and staff write it: CJK (ideographs, punctuation,
# full-width forms, enclosed and compatibility forms), ASCII, Latin-1 and general punctuation.
_CHINESE_TEXT_RANGES = (
    (0x20, 0x7E), (0xA0, 0x17F), (0x2000, 0x206F), (0x2100, 0x27BF), (0x2E80, 0x2FDF),
    (0x3000, 0x33FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
)
_PRUNED_REVISION = 1
_OUTSIDE_RANGES = re.compile(
    "[^" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _CHINESE_TEXT_RANGES) + "]"
)


class Tokens:
    """The model's tokenizer, loaded fast for Chinese text, exact for every text.

    Loading the full tokenizer costs ~0.9 s (250,002 pieces in 17 MB of JSON, for ~100
    scripts). Most of that is other scripts: a Unigram tokenizer can only use pieces made of
    the characters of the text it cuts, so for a text whose normalised characters all lie in
    the ranges above, a vocabulary of only the pieces made of those characters (131k) finds
    exactly the same pieces, scores and best cut — the piece with the lowest score is kept too,
    since it sets the penalty of unknown characters. That vocabulary is derived once, stored
    beside the model (with its ids in the full one) and loads in ~0.25 s. A text with any
    other character (Cyrillic, Thai, `<mask>`...) goes to the full tokenizer, loaded on
    first need. `tests/test_encoder.py` checks both against each other.
    """

    def __init__(self, path: Path, max_length: int) -> None:
        self.path = Path(path)
        self.max_length = max_length
        self._full = None
        self._pruned = None
        self._pruned_ids: np.ndarray | None = None
        try:
            self._pruned, self._pruned_ids = self._load_pruned()
        except Exception as exc:  # a speed-up only: the full tokenizer always works
            log.info("%s: no pruned tokenizer (%s); loading the full one", self.path, exc)
        if self._pruned is None:
            self._full = self._load_full()

    # -- loading -----------------------------------------------------------------------------
    def _configure(self, tokenizer):
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        return tokenizer

    def _load_full(self):
        from tokenizers import Tokenizer

        try:
            return self._configure(Tokenizer.from_file(str(self.path)))
        except Exception as exc:  # tokenizers raises plain Exception for a damaged file
            raise UnsupportedModel(f"{self.path}: cannot be loaded ({exc})") from exc

    @property
    def full(self):
        if self._full is None:
            self._full = self._load_full()
        return self._full

    def _pruned_paths(self) -> tuple[Path, Path, list]:
        stat = self.path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, _PRUNED_REVISION]
        stem = self.path.with_suffix("")
        return (Path(f"{stem}.qa-bot-chinese.json"), Path(f"{stem}.qa-bot-chinese.npy"),
                stamp)

    def _load_pruned(self):
        from tokenizers import Tokenizer

        json_path, ids_path, stamp = self._pruned_paths()
        try:
            text = json_path.read_text(encoding="utf-8")
            ids = np.load(ids_path, allow_pickle=False)
            if ids[:3].tolist() == stamp:
                return self._configure(Tokenizer.from_str(text)), ids[3:]
        except (OSError, ValueError):
            pass
        # First use: derive it from the full tokenizer's JSON (~1 s, once per model folder).
        pruned_json, ids = _prune_tokenizer_json(self.path)
        tokenizer = self._configure(Tokenizer.from_str(pruned_json))
        with contextlib.suppress(OSError):  # a read-only model folder: derive it next time
            _write_atomically(json_path, pruned_json.encode("utf-8"))
            buffer = io.BytesIO()
            np.save(buffer, np.concatenate([np.asarray(stamp, dtype=np.int64), ids]))
            _write_atomically(ids_path, buffer.getvalue())
        return tokenizer, ids

    # -- use ---------------------------------------------------------------------------------
    def _fits(self, text: str) -> bool:
        """Whether the pruned vocabulary cuts this text exactly as the full one."""
        if self._pruned is None or "<mask>" in text:
            return False
        normalized = self._pruned.normalizer.normalize_str(text)
        return _OUTSIDE_RANGES.search(normalized) is None

    def count(self, text: str) -> int:
        tokenizer = self._pruned if self._fits(text) else self.full
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of the full vocabulary, special tokens added, truncated to the window."""
        fits = [self._fits(text) for text in texts]
        out: list[list[int]] = [[] for _ in texts]
        pruned_rows = [i for i, ok in enumerate(fits) if ok]
        full_rows = [i for i, ok in enumerate(fits) if not ok]
        if pruned_rows:
            encoded = self._pruned.encode_batch([texts[i] for i in pruned_rows])
            for row, encoding in zip(pruned_rows, encoded, strict=True):
                out[row] = self._pruned_ids[encoding.ids].tolist()
        if full_rows:
            encoded = self.full.encode_batch([texts[i] for i in full_rows])
            for row, encoding in zip(full_rows, encoded, strict=True):
                out[row] = encoding.ids
        return out


def _prune_tokenizer_json(path: Path) -> tuple[str, np.ndarray]:
    """The tokenizer.json of a Unigram model cut down to pieces of Chinese-text characters,
    and the id of each kept piece in the full vocabulary."""
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("type") != "Unigram" or model.get("byte_fallback"):
        raise UnsupportedModel("not a Unigram vocabulary without byte fallback")
    vocab = model["vocab"]
    special = {token["id"] for token in data.get("added_tokens", [])}
    lowest = min(range(len(vocab)), key=lambda i: vocab[i][1])
    kept = [
        i for i, (piece, _) in enumerate(vocab)
        if i in special or i == lowest or _OUTSIDE_RANGES.search(piece) is None
    ]
    index_of = {old: new for new, old in enumerate(kept)}
    # Special tokens keep their ids (they come first), others that fell out are dropped.
    data["added_tokens"] = [t for t in data.get("added_tokens", []) if t["id"] in index_of
                            and index_of[t["id"]] == t["id"]]
    unk = model.get("unk_id")
    if unk is not None and index_of.get(unk) != unk:
        raise UnsupportedModel("the unknown token is not among the first pieces")
    model["vocab"] = [vocab[i] for i in kept]
    return json.dumps(data, ensure_ascii=False), np.asarray(kept, dtype=np.int64)


def _write_atomically(path: Path, payload: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(payload)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


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
        self.tokens = Tokens(folder / "tokenizer.json", self.max_length)
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

    @property
    def dimension(self) -> int:
        return self.hidden

    # -- tokens -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return self.tokens.count(text)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokens.ids(texts)

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
