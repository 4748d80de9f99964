"""Zone and byline names of each article, parsed vs. the issue set's sources (a dev check).

    python -m bench.parse_score /work/shared/eval/issues [--formats]

Reads issue_*.md and sources.jsonl of an evaluation issue set (never shipped with the product),
parses each issue as `qa-bot ingest` would, and counts the articles whose zone and byline names
both match: zone = the section line as printed (a zone, place or district), else the zone that
sources.jsonl gives without its （note）; names = the people in the printed byline.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from qa_bot.parsing import load_file

_NOTE_RE = re.compile(r"（[^）]*）$")
# Section lines that are no zone: the zone is the one sources.jsonl gives.
_NOT_ZONE_LINE_RE = re.compile(r"书记|市长|县长|招商办|办$|局$")
_MAP_ROW_RE = re.compile(r"^\| ([A-H]\d\d) \| (issue_[A-H])\.md:[^|]*\| ([^|]*) \| ([^|]*) \|")
# People's names of each printed byline, by hand (the parser must not grade itself).
EXPECTED_NAMES = {
    "（樊晶璟 张未平）": "樊晶璟 张未平", "（廉亮 报道）": "廉亮", "（记者王忠红）": "王忠红",
    "（张云）": "张云", "（通讯员 马志伟）": "马志伟", "(游支任)": "游支任",
    "（记者杨晓明）": "杨晓明", "（记者 李虎成 赵同增）": "李虎成 赵同增",
    "（白续宏 云晓辉）": "白续宏 云晓辉", "最溧水/今日溧水通訊員 倪霞 記者 官緒明": "倪霞 官緒明",
    "本报记者 李建斌 杨珏 本报通讯员 马静波": "李建斌 杨珏 马静波", "（记者郭玉琴）": "郭玉琴",
    "临淄融媒记者郑晓伟 黄浩源报道": "郑晓伟 黄浩源", "（记者 胡健）": "胡健",
    "（鄢红梅 欧明郁）": "鄢红梅 欧明郁", "苗武軍": "苗武軍", "见习记者徐王俊报道": "徐王俊",
    "（罗洪泉）": "罗洪泉", "（王 思）": "王思", "李红光": "李红光",
    "（杨佩佩 杨杰英）": "杨佩佩 杨杰英", "（记者 刘少伟 实习生 康书维）": "刘少伟 康书维",
    "（尚丰军 施民法 冯曼）": "尚丰军 施民法 冯曼", "（记者刘业飞 翁剑）": "刘业飞 翁剑",
    "（记者 周雷森）": "周雷森", "（何小卫 剌思敏）": "何小卫 剌思敏", "记者骆道明": "骆道明",
    "（记者王天晓）": "王天晓", "（孙 航）": "孙航", "（田谷仓 摄）": "田谷仓",
    "（文章来源：晋中日报）": "", "（通讯员 陈士钊）": "陈士钊", "作者 任丽娜": "任丽娜",
    "（记者 李理）": "李理", "（中国台湾网高唐县台办通讯员 张秀）": "张秀", "作者 刘小红": "刘小红",
    "(记者 张再行)": "张再行", "记者唐天才、通讯员倪运之报道": "唐天才 倪运之",
    "攝影記者 黃鶴鳴": "黃鶴鳴", "(梁琛 摄)": "梁琛",
}


def section_lines(readme: Path) -> dict[tuple[str, int], str]:
    """(issue, article number in it) → section line as printed ("" when there is none)."""
    lines: dict[tuple[str, int], str] = {}
    for row in readme.read_text(encoding="utf-8").splitlines():
        if match := _MAP_ROW_RE.match(row):
            article, issue, section = match.group(1), match.group(2), match.group(3).strip()
            lines[(issue, int(article[1:]))] = "" if section.startswith("—") else section
    return lines


def compare_formats(paths: list[Path]) -> None:
    import tempfile
    import time

    from tests.format_fixtures import render_docx, render_html, render_pdf

    renderers = {
        "pdf": lambda text, out: render_pdf(text, out.with_suffix(".pdf")),
        "pdf 2 columns": lambda text, out: render_pdf(text, out.with_suffix(".pdf"), columns=2),
        "docx": lambda text, out: render_docx(text, out.with_suffix(".docx")),
        "html": lambda text, out: render_html(text, out.with_suffix(".html")),
    }

    def view(articles):
        return [(a.article_id, a.title, a.zone, a.byline, a.byline_names, a.text)
                for a in articles]

    with tempfile.TemporaryDirectory() as scratch:
        for kind, render in renderers.items():
            same, seconds = 0, 0.0
            for path in paths:
                folder = Path(scratch) / kind.replace(" ", "-")
                folder.mkdir(exist_ok=True)
                rendered = render(path.read_text(encoding="utf-8"), folder / path.stem)
                started = time.perf_counter()
                articles, _ = load_file(rendered)
                seconds += time.perf_counter() - started
                same += view(articles) == view(load_file(path)[0])
            print(f"{kind}: {same}/{len(paths)} issues give the text's articles; "
                  f"parse {seconds:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with issue_*.md and sources.jsonl")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    parser.add_argument("--formats", action="store_true",
                        help="also compare PDF/DOCX/HTML renderings with the text parse")
    args = parser.parse_args(argv)
    if args.formats:
        compare_formats(sorted(args.folder.glob("issue_*.md")))
    sources = [json.loads(line) for line in (args.folder / "sources.jsonl").open(encoding="utf-8")]
    sections = section_lines(args.folder / "README.md")
    parsed = {}
    for path in sorted(args.folder.glob("issue_*.md")):
        articles, _ = load_file(path)
        parsed[path.stem] = {a.title: a for a in articles}
    counts = {"zone": 0, "names": 0, "both": 0}
    numbers: dict[str, int] = {}
    for row in sources:
        numbers[row["issue"]] = numbers.get(row["issue"], 0) + 1
        section = sections.get((row["issue"], numbers[row["issue"]]), "")
        want_zone = section if section and not _NOT_ZONE_LINE_RE.search(section) else (
            _NOTE_RE.sub("", row["zone"]))
        want_names = EXPECTED_NAMES[row["byline"]].split()
        article = parsed[row["issue"]].get(row["title"])
        got_zone = article.zone if article else "(article not found)"
        got_names = list(getattr(article, "byline_names", ()))
        if article is not None and not hasattr(article, "byline_names"):
            got_names = article.byline.split()  # before the field: the byline was the names
        zone_ok, names_ok = got_zone == want_zone, list(got_names) == want_names
        counts["zone"] += zone_ok
        counts["names"] += names_ok
        counts["both"] += zone_ok and names_ok
        if args.verbose and not (zone_ok and names_ok):
            print(f"{row['issue']} «{row['title'][:16]}»: zone {got_zone!r} (want {want_zone!r})"
                  f", names {list(got_names)} (want {want_names})")
    total = len(sources)
    print(" ".join(f"{k}: {v}/{total}" for k, v in counts.items()))
    return 0 if counts["both"] == total else 1


if __name__ == "__main__":
    sys.exit(main())
