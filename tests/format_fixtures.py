"""Render a plain-text bulletin issue as PDF, DOCX or HTML, the way the bulletin is published.

Tests build their PDF/DOCX/HTML fixtures at test time from text (the bundled issue or small
texts of their own), so that the same content in every format can be compared article by article.

PDF: reportlab with its built-in Adobe CID font STSong-Light (simplified and traditional Chinese,
no font file needed: Noto CJK ships PostScript outlines, which reportlab cannot embed). Body
10.5 pt with a two-character first-line indent, `##`/`#` titles 16 pt, `###` headings 13 pt;
one or two columns; a running header and a page number on every page; `<sup>2</sup>` set as
a small raised 2. Lines wrap at the column width, so paragraphs split across columns and pages.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

_TITLE_RE = re.compile(r"^(#{1,3})\s*(.*)$")
_SUP_RE = re.compile(r"<sup>(.*?)</sup>")
_LATIN_ONLY_RE = re.compile("(·)")
FONT = "STSong-Light"
BODY, HEADING, TITLE = 10.5, 13.0, 16.0


def blocks(text: str) -> list[tuple[str, str]]:
    """(kind, text) for each non-blank line: kind is "title", "heading" or "para"."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _TITLE_RE.match(line)
        if match:
            out.append(("heading" if len(match.group(1)) == 3 else "title", match.group(2)))
        else:
            out.append(("para", line))
    return out


def render_pdf(text: str, path: Path, columns: int = 1, header: str = "山西开发区建设简报") -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    width, height = A4
    margin, gutter = 56.0, 24.0
    column_width = (width - 2 * margin - gutter * (columns - 1)) / columns
    top, bottom = height - margin - 20, margin + 20
    pdf = canvas.Canvas(str(path), pagesize=A4)
    state = {"page": 1, "column": 0, "y": top}

    def start_page() -> None:
        pdf.setFont(FONT, 9)
        pdf.drawString(margin, height - margin + 4, f"{header}  2023年第6期")
        pdf.drawCentredString(width / 2, margin - 10, f"— {state['page']} —")

    def next_column() -> None:
        state["column"] += 1
        state["y"] = top
        if state["column"] >= columns:
            pdf.showPage()
            state["page"] += 1
            state["column"] = 0
            start_page()

    def draw_line(pieces: list[tuple[str, bool]], size: float, indent: float) -> None:
        if state["y"] - size < bottom:
            next_column()
        state["y"] -= size * 1.6
        x = margin + state["column"] * (column_width + gutter) + indent
        for piece, raised in pieces:
            piece_size = size * 0.6 if raised else size
            for run in _LATIN_ONLY_RE.split(piece):  # STSong-Light has no U+00B7
                font = "Helvetica" if _LATIN_ONLY_RE.fullmatch(run) else FONT
                pdf.setFont(font, piece_size)
                pdf.drawString(x, state["y"] + (size * 0.4 if raised else 0), run)
                x += pdfmetrics.stringWidth(run, font, piece_size)

    def wrap(line: str, size: float, indent: float) -> list[list[tuple[str, bool]]]:
        """Rows of (text, raised) pieces that fit the column. A line never breaks next to a
        space (a typesetter would drop it, and with it the space of `。 吕平` or `国家级 三个`)."""
        chars = [(c, i % 2 == 1) for i, p in enumerate(_SUP_RE.split(line)) for c in p]
        rows: list[list[tuple[str, bool]]] = [[]]
        used, limit = indent, column_width
        for char, raised in chars:
            char_width = _width(char, size * 0.6 if raised else size)
            row = rows[-1]
            if used + char_width > limit and row:
                carried = _carry_over(row, char)
                rows.append(carried)
                used = sum(_width(c, size * 0.6 if r else size) for c, r in carried)
            rows[-1].append((char, raised))
            used += char_width
        return [_pieces(row) for row in rows if row]

    start_page()
    for kind, line in blocks(text):
        size = {"title": TITLE, "heading": HEADING, "para": BODY}[kind]
        indent = 2 * BODY if kind == "para" else 0.0
        if kind == "title":
            state["y"] -= BODY  # space above a title
        for number, row in enumerate(wrap(line, size, indent)):
            draw_line(row, size, indent if number == 0 else 0.0)
    pdf.save()
    return path


def _carry_over(row: list[tuple[str, bool]], next_char: str) -> list[tuple[str, bool]]:
    """Characters moved from the end of a full row to the next one, so that the break is not
    next to a space."""
    carried: list[tuple[str, bool]] = []
    while row and len(carried) < 8:
        first_next = carried[0][0] if carried else next_char
        if row[-1][0] != " " and first_next != " ":
            break
        carried.insert(0, row.pop())
    return carried


def _width(char: str, size: float) -> float:
    from reportlab.pdfbase import pdfmetrics

    return pdfmetrics.stringWidth(char, "Helvetica" if char == "·" else FONT, size)


def _pieces(row: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Runs of characters with the same raise, as drawString wants them."""
    pieces: list[tuple[str, bool]] = []
    for char, raised in row:
        if pieces and pieces[-1][1] == raised:
            pieces[-1] = (pieces[-1][0] + char, raised)
        else:
            pieces.append((char, raised))
    return pieces


def render_docx(text: str, path: Path) -> Path:
    import docx

    document = docx.Document()
    for kind, line in blocks(text):
        if kind == "title":
            document.add_heading(line, level=2)
        elif kind == "heading":
            document.add_heading(line, level=3)
        else:
            plain = _SUP_RE.sub(lambda m: m.group(1), line)
            paragraph = document.add_paragraph()
            for index, piece in enumerate(_SUP_RE.split(line)):
                if piece:
                    paragraph.add_run(piece).font.superscript = index % 2 == 1
            assert paragraph.text == plain
    document.save(str(path))
    return path


def render_html(text: str, path: Path, title: str = "山西开发区建设简报") -> Path:
    """A saved web page: navigation, the issue in <article>, a footer."""
    body = []
    for kind, line in blocks(text):
        tag = {"title": "h2", "heading": "h3", "para": "p"}[kind]
        escaped = _SUP_RE.sub(r"<sup>\1</sup>", html.escape(line).replace("&lt;sup&gt;", "<sup>")
                              .replace("&lt;/sup&gt;", "</sup>"))
        body.append(f"<{tag}>{escaped}</{tag}>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        "<nav><ul><li><a href='/'>首页</a></li><li><a href='/news'>开发区动态</a></li>"
        "<li><a href='/about'>关于我们</a></li></ul></nav>"
        "<article>" + "\n".join(body) + "</article>"
        "<footer><p>版权所有 山西省开发区建设简报编辑部 备案号：晋ICP备00000000号</p></footer>"
        "</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path
