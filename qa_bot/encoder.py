"""The sentence encoder: the model's tokenizer + its transformer exported to ONNX, no torch.

Loading a model through sentence-transformers costs seconds of imports (torch, transformers,
scikit-learn, scipy) before the first question can be answered, and torch is not the fastest
runtime for one short text on a CPU either. So the transformer of a sentence-transformers folder
is exported once to an ONNX graph (with torch, on first use; `ensure_export`), cached beside the
model with the fingerprint of the weights it came from, and run by onnxruntime
(`qa_bot.runtime`) for questions and for ingest. Mean pooling and normalisation are done here in
numpy, as sentence-transformers does them; vectors agree with sentence-transformers' to float32
precision (tests/test_encoder.py checks it). An int8 graph is derived from the fp32 one by
dynamic quantization when `[model] precision = "int8"`.

The word-embedding table is not part of the graph: it is kept as a memory-mapped .npy and only
the rows a text uses are read. That makes the graph 86 MB instead of 470 MB for the bundled e5
(250k-piece vocabulary), which loads in ~0.1 s, and int8 quantization leaves the table exact.

Only folders of the shape sentence-transformers writes for a plain encoder (Transformer at the
root, mean pooling, optional Normalize, a tokenizer.json) are handled here (`supports()`);
anything else, and a model whose export fails, goes through sentence-transformers as before.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qa_bot import runtime

log = logging.getLogger(__name__)

# Bump when the export's output changes, so that graphs exported by older code are redone.
EXPORT_REVISION = 1
EXPORT_FOLDER = "onnx"
_EXPORT_META = "export.json"  # written last: a folder without it is not a finished export
_WORD_TABLE = "word_embeddings.npy"
_WEIGHT_SUFFIXES = {".safetensors", ".bin"}


class UnsupportedModel(Exception):
    """The folder is not a mean-pooling sentence-transformers model this module can export."""


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
    st_config_path = folder / "sentence_bert_config.json"
    st_config = (
        json.loads(st_config_path.read_text(encoding="utf-8")) if st_config_path.exists() else {}
    )
    if st_config.get("do_lower_case"):
        raise UnsupportedModel("do_lower_case")
    if not (folder / "tokenizer.json").is_file():
        raise UnsupportedModel("needs tokenizer.json")
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise UnsupportedModel("no weights file at the folder root")
    max_length = min(
        int(st_config.get("max_seq_length") or config["max_position_embeddings"]),
        int(config["max_position_embeddings"]),
    )
    return {
        "config": config,
        "normalize": len(types) == 3,
        "max_length": max_length,
    }

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



# --------------------------------------------------------------------------------------------
# Export (torch, once per model folder and weights)


def export_dir_for(folder: Path, fingerprint: str, cache_dir: Path) -> Path:
    """Where the graphs of `folder` live: beside the model, or under the cache when the model
    folder is read-only (one subfolder per weights fingerprint)."""
    beside = Path(folder) / EXPORT_FOLDER
    with contextlib.suppress(OSError):
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK) or _export_is_current(beside, fingerprint):
            return beside
    digest = fingerprint.split(":", 1)[-1][:16]
    return Path(cache_dir).expanduser() / EXPORT_FOLDER / f"{Path(folder).name}-{digest}"


def _export_is_current(target: Path, fingerprint: str) -> bool:
    try:
        meta = json.loads((target / _EXPORT_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("fingerprint") == fingerprint and meta.get("revision") == EXPORT_REVISION


def graph_path(target: Path, precision: str) -> Path:
    return target / f"model-{runtime.check_precision(precision)}.onnx"


def ensure_export(folder: Path, target: Path, fingerprint: str, precision: str) -> Path:
    """The export folder `target` holding the graph of `precision` for the weights in `folder`,
    exporting (fp32, with torch) and quantizing (int8) on first use.

    Concurrent callers wait for one export instead of racing (a lock file); the files are
    written to a temporary sibling and renamed into place, so a crash leaves nothing that looks
    finished. A folder exported from other weights (another fingerprint) is replaced.
    """
    from qa_bot.model_convert import exclusive_lock

    folder, target = Path(folder), Path(target)
    graph = graph_path(target, precision)

    def exported() -> bool:
        return _export_is_current(target, fingerprint) and graph_path(target, "fp32").is_file()

    if exported() and graph.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.parent / f".{target.name}.lock"):
        if not exported():
            log.warning("exporting %s to ONNX (first use of these weights; about a minute)",
                        folder)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                _export(folder, staging, fingerprint)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if not graph.is_file():  # int8 is derived from the fp32 graph when first asked for
            runtime.quantize_dynamic_int8(graph_path(target, "fp32"), graph)
    return target


def _export(folder: Path, out: Path, fingerprint: str) -> None:
    """Export the transformer of `folder`: inputs_embeds + attention_mask -> token states."""
    # Imported here: exporting is the only thing that needs torch.
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    layout = _read_layout(folder)
    try:
        # Eager attention: plain MatMul/Softmax nodes that onnxruntime fuses into its own kernels.
        model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    except (OSError, ValueError, TypeError) as exc:
        raise UnsupportedModel(f"transformers cannot load {folder} ({exc})") from exc
    table = model.get_input_embeddings().weight.detach().float().numpy()
    # fp16 when that loses nothing (the bundled model's weights are fp16): half the disk.
    half = table.astype(np.float16)
    _write_npy(out / _WORD_TABLE, half if np.array_equal(half.astype(np.float32), table) else table)

    class _Transformer(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds, attention_mask):
            output = self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
            return output.last_hidden_state

    hidden = table.shape[1]
    sample = torch.randn(2, 7, hidden), torch.ones(2, 7, dtype=torch.int64)
    sample[1][1, 5:] = 0  # padding in the sample, so the graph keeps the mask's path
    axes = {0: "batch", 1: "tokens"}
    graph = out / "model-fp32.onnx"
    wrapped = _Transformer(model).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it keeps dynamic
            expected = wrapped(*sample).numpy()
            torch.onnx.export(
                wrapped, sample, str(graph),
                input_names=["inputs_embeds", "attention_mask"],
                output_names=["token_embeddings"],
                dynamic_axes={"inputs_embeds": axes, "attention_mask": axes,
                              "token_embeddings": axes},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript
            )
    except Exception as exc:  # the exporter raises many kinds for an unsupported operator
        raise UnsupportedModel(f"{folder}: ONNX export failed ({exc})") from exc
    # The graph must compute what torch does, at other shapes than the traced ones too.
    session = runtime.make_session(graph, threads=1)
    got = session.run(None, {"inputs_embeds": sample[0].numpy(),
                             "attention_mask": sample[1].numpy()})[0]
    log.info("exported graph vs torch: max difference %.2g", np.abs(got - expected).max())
    if not np.allclose(got, expected, atol=1e-4):
        raise UnsupportedModel(f"{folder}: the exported graph differs from torch's output")
    meta = {
        "fingerprint": fingerprint,
        "revision": EXPORT_REVISION,
        "dimension": hidden,
        "pad_id": int(layout["config"].get("pad_token_id") or 0),
    }
    (out / _EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for path in out.iterdir():
        path.chmod(0o644)
    out.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    log.info("exported %s to %s", folder, out)


def _write_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    _write_atomically(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# Running


class OnnxEncoder:
    """Tokenise, look up word vectors, run the graph, mean-pool and normalise."""

    def __init__(
        self, folder: Path, export: Path, precision: str, preload_threads: int | None = None
    ) -> None:
        """preload_threads: build the session of that many threads now, in the background.

        onnxruntime releases the GIL while it loads a graph, so the session is ready by the
        time the tokenizer (and, in `qa-bot ask`, the index and jieba) have loaded.
        """
        folder, export = Path(folder), Path(export)
        layout = _read_layout(folder)
        meta = json.loads((export / _EXPORT_META).read_text(encoding="utf-8"))
        self.folder = folder
        self.precision = precision
        self.graph = graph_path(export, precision)
        self.normalize = layout["normalize"]
        self.max_length = layout["max_length"]
        self.hidden = int(meta["dimension"])
        self.pad_id = int(meta["pad_id"])
        # One session per thread count (questions and batches may differ); built on first use.
        self._sessions: dict[int, object] = {}
        self._sessions_lock = threading.Lock()
        if preload_threads is not None:
            # Not a daemon: a process that fails early (a damaged index) waits for the load to
            # end instead of tearing onnxruntime down under it (a crash at exit otherwise).
            threading.Thread(target=self._preload, args=(preload_threads,),
                             name="onnx-session-load").start()
        self.tokens = Tokens(folder / "tokenizer.json", self.max_length)
        self._word = np.load(export / _WORD_TABLE, mmap_mode="r", allow_pickle=False)

    def _preload(self, threads: int) -> None:
        try:
            self.session(threads)
        except runtime.GraphError as exc:  # raised again, to the caller, on first use
            log.debug("preloading the session failed: %s", exc)

    @property
    def dimension(self) -> int:
        return self.hidden

    def session(self, threads: int):
        with self._sessions_lock:
            if threads not in self._sessions:
                self._sessions[threads] = runtime.make_session(self.graph, threads)
            return self._sessions[threads]

    # -- tokens -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return self.tokens.count(text)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokens.ids(texts)

    # -- vectors ------------------------------------------------------------------------------
    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        threads: int = 1,
        progress: Callable[[int], object] | None = None,
    ) -> np.ndarray:
        """Normalised embeddings, computed in batches of similar length (little padding)."""
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        session = self.session(threads)
        ids = self.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.embed_ids([ids[i] for i in rows], session)
            if progress is not None:
                progress(len(rows))
        return out

    def embed_ids(self, batch: list[list[int]], session) -> np.ndarray:
        lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int64, count=len(batch))
        width = int(lengths.max())
        token_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        embeds = self._word[token_ids].astype(np.float32)
        (hidden,) = session.run(None, {"inputs_embeds": embeds, "attention_mask": mask})
        pooled = np.einsum("btd,bt->bd", hidden, mask.astype(np.float32))
        pooled /= lengths[:, None].astype(np.float32)
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)
