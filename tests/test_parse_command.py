"""`qa-bot parse`: what ingest would make of issue files, without an index or the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.format_fixtures import render_pdf

PRESS = Path(__file__).resolve().parent / "fixtures" / "bylines-press.txt"
SEED = REPO_ROOT / "corpus" / "bulletin-2023-06.txt"

# Runs the command in a fresh interpreter and reports which heavy modules it imported.
_PROBE = (
    "import sys, json\n"
    "from qa_bot.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "heavy = sorted(m for m in ('torch', 'faiss', 'sentence_transformers', 'onnxruntime')"
    " if m in sys.modules)\n"
    "print(json.dumps(heavy), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_parse(*args: str, index_dir: Path) -> tuple[int, str, str, list[str]]:
    env = {**os.environ, "QA_BOT_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "parse", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )
    *messages, heavy = done.stderr.strip().splitlines()
    return done.returncode, done.stdout, "\n".join(messages), json.loads(heavy)


def test_parse_json_lists_every_article_and_touches_no_index(tmp_path):
    code, out, err, heavy = run_parse("--json", str(PRESS), str(SEED), index_dir=tmp_path / "ix")
    assert code == 0 and err == "" and heavy == []
    assert not (tmp_path / "ix").exists()
    rows = json.loads(out)
    assert len(rows) == 20 + 10
    first = rows[0]
    assert {key: first[key] for key in
            ("file", "issue", "title", "zone", "byline", "byline_names", "warnings")} == {
        "file": str(PRESS), "issue": "bylines-press", "title": "专家来高新区调研座谈",
        "zone": "盐湖高新区", "byline": "丁一 报道", "byline_names": ["丁一"], "warnings": []}
    xinxiang = next(r for r in rows if r["title"].startswith("新乡"))
    assert xinxiang["warnings"] == [
        "no zone line; zone «新乡经济技术开发区» taken from the text"]
    assert {r["issue"] for r in rows[20:]} == {"bulletin-2023-06"}


def test_parse_table_shows_zone_title_byline_paragraphs_and_warnings(tmp_path):
    pdf = render_pdf(PRESS.read_text(encoding="utf-8"), tmp_path / "press.pdf", columns=2)
    code, out, _, heavy = run_parse(str(pdf), index_dir=tmp_path / "ix")
    assert code == 0 and heavy == []
    lines = out.splitlines()
    assert lines[0] == f"{pdf}: 20 articles (issue press)"
    assert lines[1].split(" │ ") == ["  zone", "title", "byline", "paragraphs", "warnings"]
    row = ("  大同市 │ 大同以招商促转型 │ 本报记者 周八 吴九 本报通讯员 郑十 [周八、吴九、郑十] │ "
           "1 │ —")
    assert row in lines
    assert any(line.endswith("taken from the text") for line in lines)


def test_parse_names_refused_files_in_one_line_and_exits_non_zero(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n%broken")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    text_issue = tmp_path / "press.txt"
    text_issue.write_text(PRESS.read_text(encoding="utf-8"), encoding="utf-8")
    code, out, err, _ = run_parse(str(tmp_path), index_dir=tmp_path / "ix")
    assert code == 1
    skipped, refused = err.splitlines()
    assert skipped == f"skipped: {tmp_path / 'photo.jpg'}: not an issue file"
    assert refused.startswith(f"refused: {broken}: damaged PDF (")
    assert refused.endswith("export the issue from the layout program as text (UTF-8) and "
                            "ingest that file")
    assert f"{text_issue}: 20 articles" in out
