"""PDF, DOCX and HTML issues: the same content gives the same articles as the plain text.

Fixtures are rendered at test time (tests/format_fixtures.py) from the bundled issue and from
tests/fixtures/bylines-press.txt (every press byline and section-line form), so each format is
compared article by article — ids, titles, zones, bylines, byline names, text — and chunk by
chunk with the plain-text parse. Refusals: one line naming the file and what to do.
"""

from __future__ import annotations

import io
import itertools
import shutil
import zipfile
from pathlib import Path

import pytest

from qa_bot.chunking import SentenceChunker
from qa_bot.parsing import InputError, load_file
from qa_bot.records import Article
from tests.format_fixtures import render_docx, render_html, render_pdf

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "corpus" / "bulletin-2023-06.txt"
PRESS = Path(__file__).resolve().parent / "fixtures" / "bylines-press.txt"


def article_view(articles: list[Article]) -> list[tuple]:
    """Everything about an article except where in its file it was found."""
    return [
        (a.article_id, a.issue, a.title, a.subtitle, a.zone, a.byline, a.byline_names, a.date,
         a.text)
        for a in articles
    ]


def chunk_view(articles: list[Article]) -> list[tuple]:
    chunker = SentenceChunker(max_tokens=120, overlap_sentences=1)
    return [(c.chunk_id, c.text, c.zone, c.byline) for a in articles for c in chunker.chunk(a)]


def render(kind: str, text: str, path: Path) -> Path:
    if kind == "pdf":
        return render_pdf(text, path.with_suffix(".pdf"))
    if kind == "pdf-2col":
        return render_pdf(text, path.with_suffix(".pdf"), columns=2)
    if kind == "docx":
        return render_docx(text, path.with_suffix(".docx"))
    return render_html(text, path.with_suffix(".html"))


@pytest.mark.parametrize("source", [SEED, PRESS], ids=["seed", "press-forms"])
@pytest.mark.parametrize("kind", ["pdf", "pdf-2col", "docx", "html"])
def test_every_format_gives_the_same_articles_and_chunks_as_the_text(tmp_path, source, kind):
    expected, _ = load_file(source)
    path = render(kind, source.read_text(encoding="utf-8"), tmp_path / source.stem)
    articles, _ = load_file(path)
    assert article_view(articles) == article_view(expected)
    assert chunk_view(articles) == chunk_view(expected)
    assert all(a.source == str(path) for a in articles)


def test_two_column_pdf_drops_running_heads_and_rejoins_a_paragraph_across_pages(tmp_path):
    import pdfplumber

    path = render_pdf(SEED.read_text(encoding="utf-8"), tmp_path / "issue.pdf", columns=2,
                      header="开发区建设简报")
    with pdfplumber.open(path) as pdf:
        assert len(pdf.pages) >= 2
        page_one = pdf.pages[0].extract_text().splitlines()
    assert page_one[0].startswith("开发区建设简报") and page_one[-1] == "— 1 —"
    last_body_line = page_one[-2]  # the right column's last line, just above the page number
    articles, problems = load_file(path)
    text = "\n".join(a.text for a in articles)
    assert "开发区建设简报" not in text and "— 1 —" not in text and "— 2 —" not in text
    # That line ends mid-paragraph: the paragraph goes on at the top of page two.
    paragraph = next(p for a in articles for p in a.paragraphs if last_body_line in p)
    assert not paragraph.endswith(last_body_line)
    assert [p.message for p in problems] == [p.message for p in load_file(SEED)[1]]


def _section_lines_as_headings(text: str) -> str:
    """The issue with each section line (a short line right above a title) set as a heading."""
    lines = text.splitlines()
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for here, after in itertools.pairwise(filled):
        line = lines[here].strip()
        if lines[after].startswith("#") and not line.startswith("#") and len(line) <= 20:
            lines[here] = "### " + line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", ["pdf", "docx", "html"])
def test_section_lines_set_as_headings_are_still_section_lines(tmp_path, kind):
    """Layouts often set the zone above a title as a small heading (a kicker)."""
    text = _section_lines_as_headings(SEED.read_text(encoding="utf-8"))
    assert text.count("### ") == 8 + 3  # the seed's 8 section lines and its 3 headings
    articles, _ = load_file(render(kind, text, tmp_path / SEED.stem))
    assert article_view(articles) == article_view(load_file(SEED)[0])


def test_docx_heading_styles_are_titles(tmp_path):
    import docx

    document = docx.Document()
    document.add_paragraph("侯马经济开发区")
    document.add_heading("召开项目建设调度会", level=1)
    document.add_paragraph("本刊讯 6月12日，侯马经济开发区召开项目建设调度会。（贺玉斌）")
    document.add_paragraph("文水经济开发区")
    document.add_paragraph("开展安全生产专项行动", style="Title")
    document.add_heading("一、精心组织", level=3)
    document.add_paragraph("本刊讯 近日，文水经济开发区开展安全生产专项行动。（魏亚东）")
    document.save(str(tmp_path / "issue.docx"))
    articles, problems = load_file(tmp_path / "issue.docx")
    assert [(a.zone, a.title, a.byline, a.paragraphs) for a in articles] == [
        ("侯马经济开发区", "召开项目建设调度会", "贺玉斌",
         ["本刊讯 6月12日，侯马经济开发区召开项目建设调度会。"]),
        ("文水经济开发区", "开展安全生产专项行动", "魏亚东",
         ["一、精心组织", "本刊讯 近日，文水经济开发区开展安全生产专项行动。"]),
    ]
    assert problems == []


def test_docx_layout_tables_are_read_cell_by_cell(tmp_path):
    import docx

    document = docx.Document()
    document.add_paragraph("侯马经济开发区")
    document.add_heading("召开项目建设调度会", level=2)
    table = document.add_table(rows=2, cols=2)
    merged = table.cell(0, 0).merge(table.cell(0, 1))  # listed twice by python-docx
    merged.paragraphs[0].text = "本刊讯 6月12日，开发区召开调度会。"
    table.cell(1, 0).paragraphs[0].text = "会议要求抓落实。"
    table.cell(1, 1).paragraphs[0].text = "（贺玉斌）"
    document.save(str(tmp_path / "tables.docx"))
    (article,), _ = load_file(tmp_path / "tables.docx")
    assert (article.byline, article.paragraphs) == (
        "贺玉斌", ["本刊讯 6月12日，开发区召开调度会。", "会议要求抓落实。"])


WECHAT_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<title>开发区动态 - 某某开发区网</title>
<meta property="og:title" content="侯马经济开发区召开项目调度会">
<meta name="author" content="记者 张三">
<meta property="article:published_time" content="2023-06-12T08:00:00+08:00">
</head><body>
<nav><ul><li><a href="/">首页</a></li><li><a href="/news">新闻中心</a></li></ul></nav>
<header><p>欢迎访问某某开发区网，今天是2023年6月12日</p></header>
<div id="js_content">
<p>本刊讯 6月12日，侯马经济开发区召开2023年项目建设第19次调度会，听取重点项目进展汇报。</p>
<p>会议要求，要紧盯重点项目，强化服务保障，面积71654m<sup>2</sup>的厂房年内完工。</p>
</div>
<footer><p>版权所有 某某开发区管委会 联系电话 0357-0000000</p></footer>
<script>var nav = "首页 新闻中心";</script>
</body></html>"""


def test_html_page_main_text_title_author_and_date(tmp_path):
    path = tmp_path / "wechat.html"
    path.write_text(WECHAT_PAGE, encoding="utf-8")
    (article,), problems = load_file(path)
    assert (article.title, article.zone, article.byline, article.byline_names, article.date) == (
        "侯马经济开发区召开项目调度会", "侯马经济开发区", "记者 张三", ("张三",), "2023-06")
    assert article.paragraphs == [
        "本刊讯 6月12日，侯马经济开发区召开2023年项目建设第19次调度会，听取重点项目进展汇报。",
        "会议要求，要紧盯重点项目，强化服务保障，面积71654m²的厂房年内完工。",
    ]
    assert problems == [] or all("zone" in p.message for p in problems)


def _scanned_pdf(path: Path) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    pdf.rect(50, 50, 400, 600, fill=1)  # an image of a page: shapes, no text layer
    pdf.save()


def _encrypted_pdf(path: Path) -> None:
    render_pdf("## 标题\n本刊讯 正文。\n", path)
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), encrypt=pdfencrypt.StandardEncryption("secret", canPrint=0))
    pdf.drawString(72, 720, "confidential")
    pdf.save()


def _damaged_pdf(path: Path) -> None:
    render_pdf(SEED.read_text(encoding="utf-8"), path)
    data = path.read_bytes()
    path.write_bytes(data[:200] + b"\x00garbage" * 50)


def _corrupt_docx(path: Path) -> None:
    render_docx("## 标题\n本刊讯 正文。\n", path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zip_bomb_docx(path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\x00" * (16 << 20))  # 16 MB of zeros, ~16 kB
    path.write_bytes(buffer.getvalue())


def _not_a_word_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "不是文档")


def _navigation_page(path: Path) -> None:
    path.write_text(
        "<html><head><title>首页</title></head><body><nav><a href='/'>首页</a></nav>"
        "<ul><li><a href='/1'>新闻一</a></li><li><a href='/2'>新闻二</a></li></ul>"
        "<footer>版权所有</footer></body></html>",
        encoding="utf-8",
    )


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        ("scan.pdf", _scanned_pdf, "without a text layer"),
        ("locked.pdf", _encrypted_pdf, "encrypted PDF"),
        ("broken.pdf", _damaged_pdf, "damaged PDF"),
        ("broken.docx", _corrupt_docx, "damaged .docx"),
        ("bomb.docx", _zip_bomb_docx, "ZIP bomb"),
        ("notes.docx", _not_a_word_zip, "not a Word document"),
        ("menu.html", _navigation_page, "no article text"),
    ],
)
def test_unusable_documents_are_refused_in_one_line(tmp_path, name, make, needle):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as refused:
        load_file(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and needle in message
    assert "\n" not in message
    assert " or " in message or "save" in message  # says what to do


def test_a_folder_of_mixed_formats_is_ingested_whole_and_refusals_named(tmp_path):
    """ingest and parse expand folders to every format; a refused file leaves no article."""
    from qa_bot.ingest import Ingestor
    from tests.conftest import make_settings
    from tests.fault_support import FakeEmbedder


    folder = tmp_path / "issues"
    folder.mkdir()
    text = SEED.read_text(encoding="utf-8")
    render_pdf(text, folder / "2023-06.pdf", columns=2)
    render_docx(PRESS.read_text(encoding="utf-8"), folder / "press.docx")
    _scanned_pdf(folder / "scan.pdf")
    shutil.copy(PRESS, tmp_path / "press.txt")
    report = Ingestor(make_settings(tmp_path / "index"), FakeEmbedder(),
                      show_progress=False).ingest([folder])
    assert report.files == 3 and report.added == 10 + 20
    assert [e.source for e in report.errors] == [str(folder / "scan.pdf")]
