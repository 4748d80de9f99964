"""The ONNX encoder gives sentence-transformers' vectors and token counts on the same folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from qa_bot import encoder
from tests.conftest import REPO_ROOT

TEXTS = [
    "query: 广灵经开区有多少家再生金属企业？",
    "passage: 广灵经济技术开发区 发展再生金属产业\n本刊讯 近年来，"
    "广灵经济技术开发区发展再生金属产业，逐步形成聚集效应。目前全区已有再生金属企业13家，其中已投产4家。",
    "（全角括号）３～５年、①㎡℃，emoji 😀，English words and 12,345.67",
    "x",
    "",
    "長治經濟技術開發區舉辦講座",  # Traditional characters
    "Привет, мир — ελληνικά, ภาษาไทย",  # scripts outside the pruned vocabulary
    "passage: " + "开发区召开项目建设调度会，听取重点项目进展情况汇报。" * 60,  # > 512 tokens
]


@pytest.fixture(scope="module")
def reference(bundled_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_model_dir), device="cpu")


def _embedder(bundled_model_dir, **settings):
    from qa_bot.config import ModelSettings
    from qa_bot.embedding import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder(
        ModelSettings(cache_dir=str(bundled_model_dir.parent), **settings), show_progress=False
    )
    model.warm_up()
    return model


@pytest.mark.slow
def test_fp32_graph_gives_sentence_transformers_vectors(bundled_model_dir, reference):
    onnx = _embedder(bundled_model_dir, precision="fp32")._onnx
    assert onnx is not None and onnx.graph.name == "model-fp32.onnx"
    ours = onnx.encode(TEXTS, batch_size=3)  # mixed lengths in a batch: padding is masked
    theirs = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (len(TEXTS), 384)
    assert np.einsum("ij,ij->i", ours, theirs).min() >= 0.9999
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([onnx.encode([t], threads=2) for t in TEXTS])
    assert np.abs(one_by_one - ours).max() < 1e-5


@pytest.mark.slow
def test_int8_graph_stays_close_to_sentence_transformers(bundled_model_dir, reference):
    onnx = _embedder(bundled_model_dir, precision="int8")._onnx
    assert onnx is not None and onnx.graph.name == "model-int8.onnx"
    ours = onnx.encode(TEXTS, batch_size=3)
    theirs = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert np.einsum("ij,ij->i", ours, theirs).min() >= 0.98


@pytest.mark.slow
def test_token_counts_match_the_transformers_tokenizer(bundled_model_dir, reference):
    onnx = _embedder(bundled_model_dir)._onnx
    for text in TEXTS[:-1]:
        expected = len(reference.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert onnx.count_tokens(text) == expected, text


@pytest.mark.slow
def test_answering_a_question_never_imports_torch(bundled_model_dir):
    _embedder(bundled_model_dir)  # the export exists (it needs torch, once)
    script = (
        "import sys; from qa_bot.config import ModelSettings; "
        "from qa_bot.embedding import SentenceTransformerEmbedder; "
        f"e = SentenceTransformerEmbedder(ModelSettings(cache_dir={str(bundled_model_dir.parent)!r}"
        "), show_progress=False); v = e.encode_queries(['侯马开发区召开了什么会？']); "
        "e.encode_passages(['开发区召开项目建设调度会'] * 3); "
        "assert v.shape == (1, 384) and e.count_tokens('侯马开发区') > 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _model_folder(folder, pooling_mode="mean", model_type="bert"):
    """The files supports() reads, as the converter writes them (weights left empty)."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "2_Normalize").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "",
         "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.base.modules.normalize.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"embedding_dimension": 384, "pooling_mode": pooling_mode, "include_prompt": True}))
    (folder / "config.json").write_text(json.dumps(
        {"model_type": model_type, "hidden_act": "gelu", "max_position_embeddings": 512,
         "hidden_size": 384, "num_attention_heads": 12, "num_hidden_layers": 12}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").touch()
    return folder


def test_supports_mean_pooling_folders_with_a_tokenizer_json(tmp_path):
    assert encoder.supports(_model_folder(tmp_path / "ok"))
    assert encoder.supports(_model_folder(tmp_path / "xlmr", model_type="xlm-roberta"))
    assert not encoder.supports(_model_folder(tmp_path / "cls", pooling_mode="cls"))
    assert not encoder.supports(tmp_path / "missing")
    no_tokenizer = _model_folder(tmp_path / "no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    assert not encoder.supports(no_tokenizer)


def test_precision_must_be_fp32_or_int8():
    from qa_bot.config import ModelSettings
    from qa_bot.embedding import ModelError, SentenceTransformerEmbedder

    with pytest.raises(ModelError, match="precision 'fp16' is not one of fp32, int8"):
        SentenceTransformerEmbedder(ModelSettings(precision="fp16")).warm_up()


def _tiny_unigram(path):
    """A Unigram tokenizer of a few pieces in several scripts, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
              ("▁", -2.0), ("开发", -3.0), ("开发区", -2.5), ("区", -4.0), ("开", -5.0),
              ("发", -5.0), ("广灵", -3.5), ("广", -6.0), ("灵", -6.0), ("▁广灵", -3.0),
              ("мир", -3.0), ("м", -7.0), ("и", -7.0), ("р", -7.0), ("▁мир", -2.0),
              ("ab", -4.0), ("a", -5.0), ("b", -5.0), ("是", -4.0), ("ммм", -20.0)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.save(str(path))
    return tokenizer


def test_pruned_tokenizer_cuts_exactly_as_the_full_one(tmp_path):
    full = _tiny_unigram(tmp_path / "tokenizer.json")
    tokens = encoder.Tokens(tmp_path / "tokenizer.json", max_length=512)
    assert (tmp_path / "tokenizer.qa-bot-chinese.json").is_file()  # derived once, kept
    texts = ["广灵开发区是开发区", "ab 广灵", "广 灵", "мир", "广灵 мир", "未知字", "ＡＢ", "",
             "a<mask>b"]
    assert tokens.ids(texts) == [e.ids for e in full.encode_batch(texts)]
    for text in texts:
        assert tokens.count(text) == len(full.encode(text, add_special_tokens=False).ids)
    again = encoder.Tokens(tmp_path / "tokenizer.json", max_length=512)
    assert again._full is None  # Chinese text alone never loads the full vocabulary
    assert again.ids(["广灵开发区"]) == [full.encode("广灵开发区").ids]
    assert again._full is None
    assert again.ids(["мир"]) == [full.encode("мир").ids]  # another script: the full one
    assert again._full is not None


def _tiny_sentence_transformer(folder):
    """A 2-layer BERT with random weights and the tiny Unigram vocabulary, saved as a
    sentence-transformers folder (mean pooling, Normalize): another model than the bundled one."""
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True)
    _tiny_unigram(folder / "tokenizer.json")
    config = BertConfig(vocab_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    BertModel(config).eval().save_pretrained(folder)
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "",
             "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True},
        "sentence_bert_config.json": {"max_seq_length": 64, "do_lower_case": False},
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>",
            "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "model_max_length": 64,
        },
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    (folder / "2_Normalize").mkdir()
    return folder


@pytest.mark.slow
def test_any_mean_pooling_model_is_exported_once_and_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = _tiny_sentence_transformer(tmp_path / "tiny")
    texts = ["广灵开发区是开发区", "ab 广灵", "мир", "x"]
    target = encoder.export_dir_for(folder, "sha256:one", tmp_path / "cache")
    assert target == folder / "onnx"  # beside the model when the folder is writable
    encoder.ensure_export(folder, target, "sha256:one", "int8")
    assert {p.name for p in target.iterdir()} >= {"model-fp32.onnx", "model-int8.onnx",
                                                   "export.json", "word_embeddings.npy"}
    theirs = SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    ours = encoder.OnnxEncoder(folder, target, "fp32").encode(texts, batch_size=3)
    assert np.abs(ours - theirs).max() < 1e-5
    int8 = encoder.OnnxEncoder(folder, target, "int8", preload_threads=1).encode(texts)
    assert np.einsum("ij,ij->i", int8, theirs).min() > 0.95

    graph = target / "model-fp32.onnx"
    stamp = graph.stat().st_mtime_ns
    encoder.ensure_export(folder, target, "sha256:one", "fp32")
    assert graph.stat().st_mtime_ns == stamp  # the same weights: nothing is exported again
    encoder.ensure_export(folder, target, "sha256:two", "fp32")
    assert graph.stat().st_mtime_ns != stamp  # other weights: exported again
    assert not (target / "model-int8.onnx").exists()  # and the old int8 graph is gone
