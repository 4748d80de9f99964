"""The span reader's network in torch: the bundled e5 BERT encoder plus a start/end head.

Used by training (``reader_training``) and by the one-time ONNX export (``reader_export``);
the answer path runs the exported graph with onnxruntime and never imports this module.

A plain re-implementation of BERT's forward pass (the converted model is an ordinary
``BertModel``) rather than ``transformers.BertModel``: training runs the frozen lower layers
once and then only the upper ones on their cached output, and the export needs a graph with
nothing in it but the ops used here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

__all__ = ["ReaderNetwork", "build_network", "load_base_state", "trained_state"]



class _Layer(nn.Module):
    """One BERT encoder layer (post-LayerNorm, exact GELU), named as in BertModel."""

    def __init__(self, hidden: int, heads: int, ffn: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, ffn)
        self.output = nn.Linear(ffn, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        head_size = hidden // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, head_size).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_size) + additive_mask
        context = (self.dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(x.shape)
        x = self.attention_norm(x + self.dropout(self.attention_output(context)))
        inner = nn.functional.gelu(self.intermediate(x))
        return self.output_norm(x + self.dropout(self.output(inner)))


# BertModel state-dict suffixes -> _Layer parameter names.
_LAYER_NAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_output",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}


class ReaderNetwork(nn.Module):
    """Embeddings, ``num_layers`` BERT layers and a linear start/end head over each token.

    ``forward`` returns (start_logits, end_logits), each [batch, tokens]; ``lower`` and
    ``upper`` split the pass at ``first_trained`` so training can cache the frozen part.
    """

    def __init__(self, config: dict, first_trained: int, dropout: float = 0.1) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        eps = config["layer_norm_eps"]
        self.first_trained = first_trained
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps, dropout)
            for _ in range(config["num_hidden_layers"])
        )
        self.qa = nn.Linear(hidden, 2)

    @staticmethod
    def additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
        return ((1.0 - attention_mask[:, None, None, :].float()) * -1e4).float()

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.lower_from_word_vectors(self.word_embeddings(input_ids), attention_mask)

    def lower_from_word_vectors(
        self, word_vectors: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The frozen part from looked-up word vectors: the exported graph starts here, so the
        250k-row word table stays out of it (looked up from a memory-mapped array instead)."""
        positions = torch.arange(word_vectors.shape[1], device=word_vectors.device)[None, :]
        x = (
            word_vectors
            + self.position_embeddings(positions)
            + self.token_type_embeddings.weight[0]  # one segment: type 0 everywhere
        )
        x = self.embedding_norm(x)
        mask = self.additive_mask(attention_mask)
        for layer in self.layers[: self.first_trained]:
            x = layer(x, mask)
        return x

    def upper(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.additive_mask(attention_mask)
        for layer in self.layers[self.first_trained :]:
            hidden = layer(hidden, mask)
        logits = self.qa(hidden)
        return logits[..., 0], logits[..., 1]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.upper(self.lower(input_ids, attention_mask), attention_mask)

    # ----------------------------------------------------------------------------------------
    # Weights in BertModel naming (the converted model's and the trained artifact's)

    def load_bert_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy every tensor of ``state`` (BertModel names, or ``qa.*``) into this network."""
        own = dict(self.named_parameters())
        for name, tensor in state.items():
            target = own.get(self._own_name(name))
            if target is None:
                continue  # the pooler: unused by a span reader
            with torch.no_grad():
                target.copy_(tensor.to(target.dtype))

    def bert_state(self, names: list[str]) -> dict[str, torch.Tensor]:
        own = dict(self.named_parameters())
        return {name: own[self._own_name(name)].detach().clone() for name in names}

    @staticmethod
    def _own_name(name: str) -> str:
        if name.startswith("qa."):
            return name
        if name.startswith("embeddings."):
            part, kind = name[len("embeddings.") :].rsplit(".", 1)
            return {"LayerNorm": "embedding_norm"}.get(part, part) + "." + kind
        if name.startswith("encoder.layer."):
            index, rest = name[len("encoder.layer.") :].split(".", 1)
            module, kind = rest.rsplit(".", 1)
            return f"layers.{index}.{_LAYER_NAMES.get(module, module)}.{kind}"
        return name


def load_base_state(model_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The converted bundled model's config and its weights (fp32)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    return config, {name: tensor.float() for name, tensor in state.items()}


def trained_state_names(network: ReaderNetwork, config: dict) -> list[str]:
    """BertModel names of the parameters training changes: the upper layers and the head."""
    names = []
    for index in range(network.first_trained, config["num_hidden_layers"]):
        for module in _LAYER_NAMES:
            for kind in ("weight", "bias"):
                names.append(f"encoder.layer.{index}.{module}.{kind}")
    return [*names, "qa.weight", "qa.bias"]


def trained_state(network: ReaderNetwork, config: dict) -> dict[str, torch.Tensor]:
    return network.bert_state(trained_state_names(network, config))


def build_network(
    model_dir: Path, first_trained: int, trained: dict[str, torch.Tensor] | None = None
) -> tuple[ReaderNetwork, dict]:
    """A network with the base model's weights, then the trained upper layers and head."""
    config, base = load_base_state(model_dir)
    network = ReaderNetwork(config, first_trained)
    network.load_bert_state(base)
    if trained is not None:
        network.load_bert_state(trained)
    return network, config
