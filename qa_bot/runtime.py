"""onnxruntime sessions for the project's models: one place for threads, providers, graph
optimisation and int8 quantization.

Every model the bot runs to answer a question (the sentence encoder, a span reader) is an ONNX
graph run by onnxruntime: it starts in a fraction of a second without importing torch, and its
kernels beat both a numpy forward pass and torch on this CPU. Graphs are exported once (with
torch, which only the export imports) and cached beside the model; see `qa_bot.encoder`.

Threads: `threads` is onnxruntime's intra-op pool (one operator split over that many cores);
0 means one per core. Inter-op parallelism stays off (a BERT graph is a chain). Idle pool
threads do not spin by default: with several questions at once (the bot) or other work on the
machine, spinning threads only steal cores from the ones doing work.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")


class GraphError(Exception):
    """A graph cannot be loaded or quantized; the message says which file and what to do."""


def make_session(
    path: Path | str,
    threads: int = 0,
    *,
    spin: bool = False,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> onnxruntime.InferenceSession:
    """An inference session for the ONNX graph at `path`.

    threads: intra-op threads (0 = one per core). spin: let idle pool threads busy-wait for the
    next operator (a little lower latency for a single user on an otherwise idle machine).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings are about the export, not us
    spinning = "1" if spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise GraphError(
            f"{path}: onnxruntime cannot load this graph ({exc}). Delete the file so that it "
            "is exported again on next use."
        ) from exc


def quantize_dynamic_int8(src: Path | str, dst: Path | str) -> Path:
    """Dynamic int8 quantization of the MatMul weights of an fp32 graph, written atomically.

    Only MatMuls (the linear layers, ~all the work) are quantized: weights to signed int8 per
    output channel, activations to uint8 per call. Embedding tables and LayerNorms stay fp32,
    which keeps the vectors close to fp32 (cosine ≥ 0.98 on the bundled e5).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    temporary = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        quantize_dynamic(
            src,
            temporary,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
        )
        os.replace(temporary, dst)
    except Exception as exc:
        raise GraphError(f"{src}: int8 quantization failed ({exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    log.info("quantized %s to int8 (%s)", src.name, dst)
    return dst


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision {precision!r} is not one of {', '.join(PRECISIONS)}; set [model] "
            "precision in config/qa-bot.toml (or QA_BOT_MODEL_PRECISION)"
        )
    return precision
