"""Interactive questions with line editing and history; the same answers as `qa-bot ask`."""

from __future__ import annotations

import sys
from pathlib import Path

from qa_bot.conversation import Conversation
from qa_bot.records import Answer
from qa_bot.render import answer_text, article_text
from qa_bot.service import QAService, QuestionError, UnknownZone

HELP = """输入问题并回车即可提问，例如：侯马经济开发区召开的是第几次调度会？
可以接着问：他要求做什么？ 那临汾开发区呢？ 只输入开发区或话题（如 侯马开发区）则列出相关文章。
  :article N   显示上一个回答中第 N 条段落（或列出的第 N 篇）所在文章的全文
  :zone 名称   只在这个开发区的文章中查找（:zone 不带名称则取消）
  :k N         每次显示 N 条段落
  :new         开始新的对话（之后的问题不再接着上文理解）
  :help        显示本说明
  :quit        退出（或 Ctrl-D）"""

HISTORY_FILE = Path("~/.local/state/qa-bot/history").expanduser()


class Repl:
    def __init__(self, service: QAService, k: int | None = None, zone: str | None = None,
                 mode: str = "hybrid") -> None:
        self.service = service
        self.k = k
        self.zone = zone
        self.mode = mode
        self.last: Answer | None = None
        # One REPL session is one conversation: follow-ups are read with the last turn.
        self.conversation = Conversation(service.settings.conversation.idle_seconds)

    def run(self) -> int:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        read = self._prompt_reader() if interactive else self._plain_reader()
        print(f"qa-bot：{len(self.service.snapshot.articles)} 篇文章。:help 查看用法，:quit 退出。")
        while True:
            try:
                line = read()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if line is None:
                return 0
            line = line.strip()
            if not line:
                continue
            if line in {":quit", ":q", ":exit"}:
                return 0
            print(self.handle(line, color=interactive), flush=True)

    def handle(self, line: str, color: bool = False) -> str:
        """One input line → the text to show (commands or a question)."""
        if line.startswith(":"):
            return self._command(line)
        try:
            self.last = self.service.answer(line, k=self.k, zone=self.zone, mode=self.mode,
                                            conversation=self.conversation)
        except (QuestionError, UnknownZone) as exc:
            return str(exc)
        return answer_text(self.last, color=color,
                           passage_min_ratio=self.service.settings.answer.passage_min_ratio)

    def _command(self, line: str) -> str:
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in {":help", ":h"}:
            return HELP
        if name == ":new":
            self.conversation.reset()
            return "已开始新的对话。"
        if name == ":article":
            if self.last is None or not argument.isdigit():
                return "用法：:article N（N 是上一个回答中的段落编号）"
            listed = ([a.article_id for a in self.last.browse] if self.last.browse else
                      [hit.chunk.article_id for hit in self.last.passages])
            index = int(argument) - 1
            if not 0 <= index < len(listed):
                return f"上一个回答只有 {len(listed)} 条"
            article = self.service.article(listed[index])
            return article_text(article) if article else "这篇文章已不在索引中"
        if name == ":zone":
            if not argument:
                self.zone = None
                return "已取消开发区限制"
            try:
                self.zone = self.service.resolve_zone(argument)
            except UnknownZone as exc:
                return str(exc)
            return f"只在 {self.zone} 的文章中查找"
        if name == ":k":
            if not argument.isdigit() or int(argument) < 1:
                return "用法：:k N（N ≥ 1）"
            self.k = int(argument)
            return f"每次显示 {self.k} 条段落"
        return f"未知命令 {name}。{HELP}"

    def _prompt_reader(self):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        HISTORY_FILE.parent.mkdir(parents=True, exist_ok=True)
        session = PromptSession(history=FileHistory(str(HISTORY_FILE)))
        return lambda: session.prompt("问> ")

    @staticmethod
    def _plain_reader():
        def read() -> str | None:
            line = sys.stdin.readline()
            return line if line else None

        return read
