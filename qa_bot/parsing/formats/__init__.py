"""Readers for issues that are not plain text: each returns the issue as bulletin text
(one paragraph a line, `## ` titles), which the bulletin parser then reads like any issue."""

from __future__ import annotations


def kickers_as_lines(blocks: list[str]) -> list[str]:
    """A heading set right above a title is the section line (zone) over it, not a heading
    inside the article before: `### 沁源县` + `## 标题` → `沁源县` + `## 标题`."""
    return [
        block.removeprefix("### ")
        if block.startswith("### ") and index + 1 < len(blocks)
        and blocks[index + 1].startswith("## ")
        else block
        for index, block in enumerate(blocks)
    ]
