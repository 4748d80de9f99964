"""Byline names reach the chunks and BM25, so a question naming a reporter finds their articles."""

from __future__ import annotations

from pathlib import Path

from qa_bot.index import IndexStore
from qa_bot.ingest import LEXICAL_TEXT, Ingestor
from qa_bot.lexical import LexicalTokenizer
from tests.conftest import make_settings
from tests.fault_support import FakeEmbedder

PRESS = Path(__file__).resolve().parent / "fixtures" / "bylines-press.txt"


def test_byline_names_are_on_chunks_and_in_their_bm25_tokens(tmp_path):
    Ingestor(make_settings(tmp_path / "index"), FakeEmbedder(), show_progress=False).ingest(
        [PRESS])
    snapshot = IndexStore(tmp_path / "index").load()
    assert snapshot.manifest.lexical["text"] == LEXICAL_TEXT
    rows = {c.title: row for row, c in enumerate(snapshot.chunks)}
    chunk = snapshot.chunks[rows["大同以招商促转型"]]
    assert chunk.byline == "本报记者 周八 吴九 本报通讯员 郑十"
    assert chunk.byline_names == ("周八", "吴九", "郑十")  # read back from chunks.jsonl
    assert "周八" not in chunk.embed_text  # the model sees the text, not the byline
    tokens = set(snapshot.tokens[rows["大同以招商促转型"]])
    assert {"周八", "吴九", "郑十"} <= tokens
    # A name printed with a space inside (许 午) is one searchable name; traditional names are
    # indexed in simplified form like the rest of the text.
    assert "许午" in snapshot.tokens[rows["招远在沪举办推介会"]]
    (name_tokens,) = LexicalTokenizer([]).tokenize_many(["杨子丑"])  # jieba may split a name
    assert set(name_tokens) <= set(snapshot.tokens[rows["專家來開發區調研"]])
