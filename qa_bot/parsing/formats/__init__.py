"""Readers for issues that are not plain text: each returns the issue as bulletin text
(one paragraph a line, `## ` titles), which the bulletin parser then reads like any issue."""
