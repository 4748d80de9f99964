"""Bad issue files: each gets a clear result — ingested, ingested with warnings naming the file
and line, or refused with the reason — and the other files of the same run still ingest.

The parser part runs without the model (`load_file`); the run-level part goes through the
`qa-bot ingest` command with the real model (slow), and the 10,000-article file through the
whole ingest with `FakeEmbedder` (the storage and BM25 side at that size, without hours of
embedding).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qa_bot.chunking import SentenceChunker, estimate_tokens
from qa_bot.index import IndexStore
from qa_bot.ingest import Ingestor
from qa_bot.parsing import InputError, load_file
from qa_bot.records import Article
from tests.conftest import SEED_ISSUE, make_settings
from tests.fault_support import FakeEmbedder, index_state, run_cli

SEED_TEXT = SEED_ISSUE.read_text(encoding="utf-8")
ZONES = ["侯马经济开发区", "太原经济技术开发区", "广灵经济技术开发区"]

# -- the inputs (all made at test time) ----------------------------------------------------------


def _bulletin(count: int, first: int = 0) -> str:
    return "\n".join(
        f"{ZONES[i % 3]}\n\n## 第{i}号项目建设调度会\n\n本刊讯 6月{i % 28 + 1}日，{ZONES[i % 3]}"
        f"召开第{i}号项目建设调度会，听取了{i}个项目的进展情况。\n\n"
        f"会议要求，各部门要加快推进项目建设。（王波）\n"
        for i in range(first, first + count)
    )


def _seed_without_titles() -> str:
    return "\n".join(line for line in SEED_TEXT.splitlines()
                     if not line.startswith("#") and "本刊讯" not in line)


BYLINE_ONLY = (
    "侯马经济开发区\n\n## 只有署名的一篇\n\n（王波）\n\n"
    "太原经济技术开发区\n\n## 召开安全生产工作会议\n\n"
    "本刊讯 6月2日，太原经济技术开发区召开安全生产工作会议。（贺玉斌）\n"
)
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>简报</title></head><body>\n"
    "<h2>召开安全生产工作会议</h2><p>本刊讯 6月2日，太原经济技术开发区召开会议。</p>\n"
    "</body></html>\n"
)
HTML_FRAGMENT = "".join(
    f"<div class='a'><p>本刊讯 6月{i}日，侯马经济开发区召开会议。</p><br></div>\n"
    for i in range(5)
)

# name → (file name, bytes, expected result, what the message or the outcome must say)
BAD_FILES: dict[str, tuple[str, Callable[[], bytes], str, str]] = {
    "empty": ("empty.txt", lambda: b"", "refused", "empty file"),
    "whitespace only": ("blank.txt", lambda: b" \n\t\n\xe3\x80\x80\n", "refused", "empty"),
    "binary with NUL bytes": ("scan.txt", lambda: bytes(range(256)) * 64, "refused",
                              "binary"),
    "binary without NUL bytes": ("noise.txt", lambda: bytes(range(128, 256)) * 64, "refused",
                                 "not a text file|neither UTF-8 nor GB18030|binary"),
    "a PDF": ("issue.txt", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "refused", "PDF"),
    "a Word document": ("issue.txt", lambda: b"PK\x03\x04" + bytes(200), "refused", "ZIP"),
    "GB18030-encoded": ("gbk.txt", lambda: SEED_TEXT.encode("gb18030"), "warned",
                        r"gbk\.txt:\d+: not UTF-8.*GB18030"),
    "UTF-16 with BOM": ("utf16.txt", lambda: SEED_TEXT.encode("utf-16"), "ingested", ""),
    "no ## titles at all": ("untitled.txt", lambda: _seed_without_titles().encode(), "warned",
                            r"untitled\.txt:\d+: no titles"),
    "HTML page": ("page.txt", lambda: HTML_PAGE.encode(), "refused", "HTML"),
    "HTML fragment": ("frag.txt", lambda: HTML_FRAGMENT.encode(), "refused", "HTML"),
    "byline-only article": ("byline.txt", lambda: BYLINE_ONLY.encode(), "warned",
                            r"byline\.txt:1: article «只有署名的一篇» has no body text; skipped"),
    "only a byline-only article": ("byline2.txt", lambda: "## 标题\n\n（王波）\n".encode(),
                                   "refused", "no articles found"),
    "JSONL with bad lines": ("rows.jsonl", lambda: (
        '{"id": "a1", "title": "标题", "text": "本刊讯 正文。"}\n'
        "{broken\n"
        '{"id": "a2", "title": "缺正文"}\n'
        "[1, 2]\n").encode(), "warned", r"rows\.jsonl:2: invalid JSON"),
    "JSONL all bad": ("allbad.jsonl", lambda: b"{broken\n[1]\n", "refused",
                      "no articles found"),
}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-inputs")
    for name, (file_name, make, _, _) in BAD_FILES.items():
        (folder / re.sub(r"\W+", "-", name)).mkdir()
        (folder / re.sub(r"\W+", "-", name) / file_name).write_bytes(make())
    return folder


def bad_path(bad_dir: Path, name: str) -> Path:
    return bad_dir / re.sub(r"\W+", "-", name) / BAD_FILES[name][0]


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_each_bad_file_gets_a_clear_result(name, bad_dir):
    _, _, expected, message = BAD_FILES[name]
    path = bad_path(bad_dir, name)
    if expected == "refused":
        with pytest.raises(InputError) as refused:
            load_file(path)
        assert str(refused.value).startswith(str(path))  # names the file
        assert re.search(message, str(refused.value)), str(refused.value)
        return
    articles, problems = load_file(path)
    assert articles and all(a.text.strip() and a.title.strip() for a in articles)
    if expected == "warned":
        assert any(re.search(message, str(p)) for p in problems), [str(p) for p in problems]
        assert all(p.source == str(path) for p in problems)


def test_gb18030_file_reads_the_same_as_utf8(bad_dir):
    decoded, _ = load_file(bad_path(bad_dir, "GB18030-encoded"))
    original, _ = load_file(SEED_ISSUE)
    assert [(a.title, a.text, a.zone, a.byline) for a in decoded] == [
        (a.title, a.text, a.zone, a.byline) for a in original]


def test_ten_thousand_articles_in_one_file(tmp_path):
    path = tmp_path / "archive.txt"
    path.write_text(_bulletin(10_000), encoding="utf-8")
    started = time.perf_counter()
    articles, problems = load_file(path)
    seconds = time.perf_counter() - started
    assert len(articles) == 10_000 and not problems
    assert len({a.article_id for a in articles}) == 10_000
    assert articles[9_999].title == "第9999号项目建设调度会"
    assert articles[9_999].byline == "王波" and articles[9_999].zone == ZONES[9_999 % 3]
    assert seconds < 60, seconds  # about a second on a laptop; no quadratic step


def test_ten_thousand_articles_as_jsonl(tmp_path):
    path = tmp_path / "archive.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(10_000):
            handle.write(json.dumps({"id": f"n{i}", "title": f"标题{i}",
                                     "text": f"本刊讯 第{i}篇。"}, ensure_ascii=False) + "\n")
    articles, problems = load_file(path)
    assert len(articles) == 10_000 and not problems


class CountingTokens:
    """estimate_tokens, counting how many characters the chunker hands it in all."""

    def __init__(self) -> None:
        self.characters = 0

    def __call__(self, text: str) -> int:
        self.characters += len(text)
        return estimate_tokens(text)


@pytest.mark.parametrize("line", [
    "开发区项目建设进展顺利，" * 20_000,  # a 240,000-character sentence, clauses only
    "开发区项目建设进展顺利" * 20_000,  # no punctuation at all
    "The zone held a meeting, and it went well " * 5_000,  # ASCII, no sentence end
])
def test_chunking_a_huge_sentence_takes_linear_time(line):
    """A line without sentence punctuation is one sentence: it is cut into pieces without
    re-reading the rest of it for every piece (this was quadratic: minutes for 300 KB)."""
    counter = CountingTokens()
    article = Article(article_id="x/1", issue="x", title="标题", text=line)
    chunks = SentenceChunker(max_tokens=200, count_tokens=counter).chunk(article)
    assert len(chunks) > 100
    assert counter.characters < 40 * len(line), counter.characters / len(line)


@pytest.mark.slow
def test_fifty_megabyte_file(tmp_path):
    """50 MB of bulletin (the seed issue again and again, titles numbered): parsed and chunked
    in bounded time and memory. Ingesting it would be some 150,000 chunks — hours of embedding
    on a CPU — so the run-level tests use smaller files."""
    import resource

    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as handle:
        copy = 0
        while handle.tell() < 50_000_000:
            handle.write(re.sub(r"^(#+ .*)$", rf"\1（{copy}）", SEED_TEXT, flags=re.M) + "\n")
            copy += 1
    assert path.stat().st_size >= 50_000_000
    started = time.perf_counter()
    articles, problems = load_file(path)
    parsed = time.perf_counter() - started
    assert len(articles) == 10 * copy and not problems
    chunker = SentenceChunker(max_tokens=200)
    chunks = sum(len(chunker.chunk(article)) for article in articles)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"50 MB: {len(articles)} articles parsed in {parsed:.1f} s, {chunks} chunks, "
          f"{seconds:.1f} s in all, peak RSS {peak_mb:.0f} MB")
    assert seconds < 300 and peak_mb < 4000


# -- a whole run: the bad files do not stop the good ones ---------------------------------------


@pytest.mark.slow
def test_bad_files_do_not_stop_the_others(bad_dir, tmp_path, embedder, monkeypatch):
    """`qa-bot ingest` of good and bad files together (real model): the good ones are in the
    index, each refused file is named with its reason, each warning with file and line, and the
    exit status says that some files were refused."""
    names = ["empty", "binary with NUL bytes", "binary without NUL bytes", "HTML page",
             "byline-only article", "only a byline-only article", "JSONL with bad lines"]
    paths = [str(SEED_ISSUE), *(str(bad_path(bad_dir, name)) for name in names)]
    index_dir = tmp_path / "index"
    result = run_cli(["--index-dir", str(index_dir), "ingest", "-q", *paths],
                     embedder=embedder, monkeypatch=monkeypatch)
    assert result.code == 1, result.stderr  # EXIT_PARTIAL: some files refused
    assert "Traceback" not in result.stderr
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused: ")]
    for name in names:
        path, expected = str(bad_path(bad_dir, name)), BAD_FILES[name][2]
        if expected == "refused":
            assert any(line.startswith(f"refused: {path}") for line in refused), name
    assert len(refused) == sum(BAD_FILES[n][2] == "refused" for n in names)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("byline.txt:1: article «只有署名的一篇» has no body text" in w for w in warnings)
    assert any(re.search(r"rows\.jsonl:2: invalid JSON", w) for w in warnings)
    assert "12 added" in result.stdout and "5 files refused" in result.stdout
    state = index_state(index_dir)
    assert set(state.issues) == {"bulletin-2023-06", "byline", "rows"}
    # The good articles answer.
    answer = run_cli(["--index-dir", str(index_dir), "ask", "--json",
                      "太原经开区召开了什么会议？"], embedder=embedder, monkeypatch=monkeypatch)
    assert answer.code == 0
    top = json.loads(answer.stdout)["passages"][0]
    assert top["title"] == "召开安全生产工作会议" and top["byline"] == "贺玉斌"


@pytest.mark.slow
def test_ten_thousand_article_file_ingests(tmp_path):
    """10,000 articles in one file through the whole ingest (FakeEmbedder: the index, BM25 and
    manifest at that size), next to a refused file, then re-ingested: nothing changes."""
    archive = tmp_path / "inputs" / "archive.txt"
    archive.parent.mkdir()
    archive.write_text(_bulletin(10_000), encoding="utf-8")
    (archive.parent / "empty.txt").write_bytes(b"")
    ingestor = Ingestor(make_settings(tmp_path / "index"), FakeEmbedder(), show_progress=False)
    started = time.perf_counter()
    report = ingestor.ingest([archive.parent])
    seconds = time.perf_counter() - started
    assert report.added == 10_000 and len(report.errors) == 1
    assert report.errors[0].source.endswith("empty.txt")
    snapshot = IndexStore(tmp_path / "index").load()
    assert len(snapshot.articles) == 10_000 and len(snapshot) == report.chunks_total >= 10_000
    again = ingestor.ingest([archive])
    assert not again.changed and again.unchanged == 10_000
    print(f"10,000 articles: {report.chunks_total} chunks ingested in {seconds:.1f} s")


def test_a_directory_ingests_every_issue_file_and_names_what_it_skips(tmp_path):
    """Upper-case suffixes and .json arrays are issues too, and so are web pages and PDFs (a
    damaged one is refused by name); other files are reported as skipped (they used to vanish
    without a word); hidden files are ignored."""
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "ISSUE-07.TXT").write_text(_bulletin(2), encoding="utf-8")
    (folder / "sub" / "issue-08.json").write_text(json.dumps(
        [{"id": "j1", "title": "标题", "text": "本刊讯 正文。"}], ensure_ascii=False),
        encoding="utf-8")
    (folder / "page.html").write_text(HTML_PAGE, encoding="utf-8")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.7")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / ".git" / "config").write_text("[core]")
    report = Ingestor(make_settings(tmp_path / "index"), FakeEmbedder(),
                      show_progress=False).ingest([folder])
    assert report.added == 4 and report.files == 4
    assert [(Path(e.source).name, "damaged PDF" in e.message) for e in report.errors] == [
        ("scan.pdf", True)]
    skipped = sorted(Path(w.source).name for w in report.warnings if "skipped" in w.message)
    assert skipped == ["photo.jpg"]
    assert set(index_state(tmp_path / "index").issues) == {"ISSUE-07", "issue-08", "page"}
