"""Synthetic-but-realistic bulletin issues, made from the seed issue's own sentences.

Articles are recombined from the sentences of corpus/bulletin-2023-06.txt (shuffled, 8–16 a
piece, in 2–5 paragraphs), under titles of the seed, with one of ~40 real Shanxi zone names (the
zone names inside the sentences are rewritten to the article's zone, numbers and months are
varied, bylines drawn from a list). The real seed issue is included unchanged, so questions
about it have their true answers among thousands of look-alike distractors: the text, the
token statistics and the zone mix are the bulletin's, only the volume is not.

Issues are written either as JSONL (exact fields) or in the bulletin's own text format (so that
an ingest benchmark pays for the real parser too). Deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

from bench.common import REPO_ROOT

SEED_ISSUE = REPO_ROOT / "corpus" / "bulletin-2023-06.txt"
GENERATOR_VERSION = 1

ZONES = [
    "太原经济技术开发区", "大同经济技术开发区", "阳泉经济技术开发区", "长治经济技术开发区",
    "晋城经济技术开发区", "朔州经济开发区", "晋中经济技术开发区", "运城经济技术开发区",
    "忻州经济开发区", "临汾经济开发区", "吕梁经济技术开发区", "侯马经济开发区",
    "广灵经济技术开发区", "左云经济技术开发区", "上党经济技术开发区", "清徐经济开发区",
    "孝义经济开发区", "介休经济开发区", "原平经济技术开发区", "襄垣经济技术开发区",
    "阳城经济开发区", "高平经济开发区", "河津经济技术开发区", "永济经济技术开发区",
    "芮城经济开发区", "祁县经济开发区", "文水经济开发区", "平遥经济开发区",
    "灵石经济开发区", "汾阳经济开发区", "交城经济开发区", "洪洞经济开发区",
    "翼城经济开发区", "闻喜经济开发区", "绛县经济开发区", "稷山经济开发区",
    "盂县经济开发区", "平定经济开发区", "阳曲经济开发区", "古交经济开发区",
]
BYLINES = ["王文军", "贺玉斌", "王波", "周旭 张晨帆", "崔家豪", "吕平", "魏亚东", "王云霞",
           "陈强", "晓晓妹", "李娜", "张伟", "刘洋", "赵敏", "孙浩", "杨帆", "郭静", "马超"]
_ZONE_NAME = re.compile(r"[\u4e00-\u9fff]{2}(?:经济技术开发区|经济开发区|经开区|开发区)")
_NUMBER = re.compile(r"\d+")


def seed_material():
    """(sentences, titles) of the seed issue."""
    from qa_bot.chinese import split_sentences
    from qa_bot.parsing import load_file

    articles, _ = load_file(SEED_ISSUE)
    sentences = [
        s for a in articles for p in a.paragraphs for s in split_sentences(p) if len(s) >= 8
    ]
    titles = [a.title for a in articles]
    return articles, sentences, titles


def _rezone(sentence: str, zone: str) -> str:
    place = zone[:2]
    short = place + "经开区"
    return _ZONE_NAME.sub(lambda m: zone if len(m.group()) > 5 else short, sentence)


def _renumber(text: str, rng: random.Random) -> str:
    def swap(match: re.Match) -> str:
        digits = match.group()
        if len(digits) == 4 and digits.startswith("20"):  # a year stays a plausible year
            return str(rng.choice([2021, 2022, 2023, 2024]))
        return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in digits[1:])
    return _NUMBER.sub(swap, text)


def synthetic_articles(count: int, seed: int = 0) -> list[dict]:
    """`count` synthetic articles as dicts (id, issue, zone, title, text, byline, date)."""
    return list(itertools.islice(iter_synthetic_articles(seed), count))


def iter_synthetic_articles(seed: int = 0) -> Iterator[dict]:
    _, sentences, titles = seed_material()
    rng = random.Random(seed)
    for n in itertools.count():
        zone = rng.choice(ZONES)
        picked = rng.sample(sentences, rng.randint(8, 16))
        picked = [_renumber(_rezone(s, zone), rng) for s in picked]
        cuts = sorted(rng.sample(range(1, len(picked)), rng.randint(1, 4)))
        paragraphs = ["".join(picked[a:b]) for a, b in zip([0, *cuts], [*cuts, len(picked)],
                                                         strict=True)]
        paragraphs[0] = "本刊讯 " + paragraphs[0]
        issue = f"synth-{n // 40:04d}"
        yield {
            "id": f"{issue}-{n % 40:02d}",
            "issue": issue,
            "zone": zone,
            "title": _renumber(_rezone(rng.choice(titles), zone), rng),
            "text": "\n".join(paragraphs),
            "byline": rng.choice(BYLINES),
            "date": f"{rng.choice([2021, 2022, 2023])}-{rng.randint(1, 12):02d}",
        }


def write_issues(directory: Path, articles: list[dict], fmt: str = "jsonl",
                 include_seed: bool = True) -> list[Path]:
    """Write the articles as issues (40 a file) in `fmt` ("jsonl" or "bulletin")."""
    directory.mkdir(parents=True, exist_ok=True)
    by_issue: dict[str, list[dict]] = {}
    for article in articles:
        by_issue.setdefault(article["issue"], []).append(article)
    paths = []
    for issue, rows in by_issue.items():
        if fmt == "jsonl":
            path = directory / f"{issue}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                            encoding="utf-8")
        else:
            path = directory / f"{issue}.txt"
            path.write_text(_bulletin(rows), encoding="utf-8")
        paths.append(path)
    if include_seed:
        target = directory / SEED_ISSUE.name
        target.write_text(SEED_ISSUE.read_text(encoding="utf-8"), encoding="utf-8")
        paths.append(target)
    return paths


def _bulletin(rows: list[dict]) -> str:
    """The seed's print layout: zone line, ## title, paragraphs, byline in （）."""
    parts = []
    for row in rows:
        paragraphs = row["text"].split("\n")
        paragraphs[-1] += f"（{row['byline']}）"
        parts.append(f"{row['zone']}\n\n## {row['title']}\n\n" + "\n\n".join(paragraphs) + "\n")
    return "\n".join(parts)


def articles_for_chunks(
    target_chunks: int, count_tokens, seed: int = 0, with_seed: bool = True
) -> list[dict]:
    """Enough synthetic articles for about `target_chunks` chunks (counting the seed issue's
    when `with_seed`), as the product's chunker would cut them with the given token counter."""
    from qa_bot.chunking import SentenceChunker
    from qa_bot.config import ChunkingSettings
    from qa_bot.records import Article

    settings = ChunkingSettings()
    chunker = SentenceChunker(settings.max_tokens, settings.overlap_sentences, count_tokens)
    seed_articles, _, _ = seed_material()
    chunks = sum(len(chunker.chunk(a)) for a in seed_articles) if with_seed else 0
    out = []
    for row in iter_synthetic_articles(seed):
        if chunks >= target_chunks:
            break
        article = Article(article_id=row["id"], issue=row["issue"], title=row["title"],
                          text=row["text"], zone=row["zone"], byline=row["byline"])
        chunks += len(chunker.chunk(article))
        out.append(row)
    return out
