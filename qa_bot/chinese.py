"""Chinese text helpers shared by chunking, lexical search and answer extraction.

- `to_simplified`: Traditional → Simplified (OpenCC), so a question in either script finds text
  printed in the other. Applied to indexed tokens and to questions, never to displayed text.
- `sentence_spans`: sentence boundaries on 。！？；… (and their ASCII forms), closing quotes and
  brackets kept with the sentence they close.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Sentence-final punctuation, then any closing quotes/brackets that belong to that sentence.
_CLOSERS = r"[”’」』）)\]》〉\"']*"
_SENTENCE_END = re.compile(r"(?:[。！？；!?;]+|…+|\.{3,})" + _CLOSERS)
# Full stops only: ；-separated clauses stay together (an answer and its subject often do).
_FULL_STOP = re.compile(r"(?:[。！？!?]+|…+|\.{3,})" + _CLOSERS)
_NEWLINES = re.compile(r"\n+")


@lru_cache(maxsize=1)
def _t2s():
    import opencc  # deferred: loading the dictionaries costs ~50 ms, only the first call pays

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional characters → Simplified; other text unchanged (same length for CJK)."""
    return _t2s().convert(text) if text else text


def sentence_spans(text: str, split_clauses: bool = True) -> list[tuple[int, int]]:
    """(start, end) of each sentence; together they cover every non-blank character of text.

    Paragraph breaks (newlines) always end a sentence, so a heading or a line without final
    punctuation is a sentence of its own. Leading/trailing whitespace is left outside spans.
    With split_clauses=False, ；-separated clauses are not split apart.
    """
    ending = _SENTENCE_END if split_clauses else _FULL_STOP
    spans: list[tuple[int, int]] = []
    line_start = 0
    for line_match in (*_NEWLINES.finditer(text), None):
        line_end = line_match.start() if line_match else len(text)
        start = line_start
        for end_match in ending.finditer(text, line_start, line_end):
            _append_stripped(text, start, end_match.end(), spans)
            start = end_match.end()
        _append_stripped(text, start, line_end, spans)
        if line_match is None:
            break
        line_start = line_match.end()
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def _append_stripped(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))
