"""Reading input files and parsing bulletin issues into articles.

Layout (data flows down the list):

- `reading.py` — bytes to text: encodings, byte-order marks, refusals that say what to do.
- `formats/` — PDF, DOCX and HTML issues to the same Markdown-ish text as a plain issue.
- `bulletin.py` — the issue's structure: section lines, titles, paragraphs, print artifacts.
- `bylines.py` — bylines in every printed form: as printed, and the people's names.
- `zones_in_text.py` — the zone of an article, from its section line or its text.
- `shadow.py` — simplified shadow of traditional text for matching; the jieba tagger.
- `jsonl.py` — articles given as JSON lines or a JSON array.
- `loading.py` — one file to articles: picks the reader by format; folders to issue files.
- `preview.py` — what ingest would make of files, article by article (`qa-bot parse`).
"""

from qa_bot.parsing.bulletin import parse_bulletin
from qa_bot.parsing.bylines import Byline, parse_byline
from qa_bot.parsing.jsonl import parse_jsonl
from qa_bot.parsing.loading import INPUT_SUFFIXES, expand_paths, load_file
from qa_bot.parsing.reading import InputError, read_text

__all__ = [
    "INPUT_SUFFIXES",
    "Byline",
    "InputError",
    "expand_paths",
    "load_file",
    "parse_bulletin",
    "parse_byline",
    "parse_jsonl",
    "read_text",
]
