"""`qa-bot` command line: ingest, remove, rebuild, ask, repl, stats, eval, bot.

A thin shell: every answer comes from `QAService.answer()`, the same path the Telegram bot uses.
Heavy libraries (torch, faiss, jieba) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from qa_bot.config import ConfigError, Settings, load_settings

log = logging.getLogger("qa_bot")

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa-bot",
        description="Answers questions about the bulletin of Shanxi's development zones, cited.",
    )
    parser.add_argument("--index-dir", help="index directory (default: embeddings/, "
                        "or QA_BOT_INDEX_DIR)")
    parser.add_argument("--config", type=Path, help="settings file (default: config/qa-bot.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    # The same options after the command (`qa-bot ingest corpus/ --index-dir D`): SUPPRESS keeps
    # a value given before the command unless the command repeats it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    commands = _WithCommonOptions(
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)

    ingest = commands.add_parser(
        "ingest", help="add or update issues (.txt/.md, .pdf, .docx, .html, .jsonl)")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ingest.set_defaults(handler=cmd_ingest)

    parse = commands.add_parser(
        "parse", help="show what ingest would make of issue files, touching no index")
    parse.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parse.add_argument("--json", action="store_true",
                       help="print a JSON list of articles (file, issue, title, zone, byline, "
                       "byline_names, warnings…)")
    parse.set_defaults(handler=cmd_parse)

    remove = commands.add_parser("remove", help="remove an issue from the index")
    remove.add_argument("issue")
    remove.set_defaults(handler=cmd_remove)

    rebuild = commands.add_parser("rebuild", help="re-embed everything (after a model change)")
    rebuild.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    rebuild.set_defaults(handler=cmd_rebuild)

    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    _add_answer_options(ask)
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.set_defaults(handler=cmd_ask)

    repl = commands.add_parser("repl", help="ask questions interactively")
    _add_answer_options(repl)
    repl.set_defaults(handler=cmd_repl)

    stats = commands.add_parser("stats", help="what the index holds")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=cmd_stats)

    evaluate = commands.add_parser("eval", help="measure retrieval and answers on a question set")
    evaluate.add_argument("questions", type=Path, metavar="FILE.jsonl")
    evaluate.add_argument("--corpus", type=Path, action="append",
                          help="ingest this corpus into a throwaway index first (repeatable)")
    evaluate.add_argument("--retriever", choices=("hybrid", "dense", "bm25", "all"),
                          default="hybrid", help="'all' compares the three side by side")
    evaluate.add_argument("--limit", type=int, help="only the first N questions")
    evaluate.add_argument("--details", type=Path, metavar="FILE",
                          help="write one JSON row per question (gold, rank, sentence, span…)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)

    train = commands.add_parser(
        "train-answer", help="learn the answer stage's window weights and confidence")
    train.add_argument("--set", action="append", required=True, metavar="QUESTIONS=CORPUS",
                       help="a question set and its corpus (comma-separated paths); repeatable")
    train.add_argument("--work-dir", default="/tmp/qa-bot-train-answer",
                       help="where each set's index is built (kept for the next run)")
    train.add_argument("--held-out", type=float, default=0.2,
                       help="share of gold articles/passages held out (not trained on)")
    train.add_argument("--seed", type=int, default=13)
    train.add_argument("--out", default="qa_bot/data/answer_model.json")
    train.set_defaults(handler=cmd_train_answer)

    bot = commands.add_parser("bot", help="run the Telegram bot")
    bot.set_defaults(handler=cmd_bot)

    # -- span reader training (qa_bot/reader_training.py parses its own options) --
    train_reader = commands.add_parser(
        "train-reader", add_help=False,
        help="train the span reader on the dev shares (train-reader --help for its options)")
    train_reader.set_defaults(handler=cmd_train_reader)

    # -- Telegram feedback (qa_bot/telegram/feedback.py) --
    feedback = commands.add_parser("feedback", help="the Telegram bot's 👍/👎 feedback")
    feedback_commands = _WithCommonOptions(feedback.add_subparsers(
        dest="feedback_command", required=True, metavar="ACTION"), common)
    export = feedback_commands.add_parser(
        "export", help="👍 rows as eval rows (qa-bot eval FILE); 👎 rows to --review")
    export.add_argument("--out", type=Path, help="eval rows (JSONL; default: stdout)")
    export.add_argument("--review", type=Path,
                        help="👎 answers for a maintainer to correct (JSONL)")
    export.add_argument("--store", type=Path,
                        help="feedback file (default: [telegram] feedback_path)")
    export.set_defaults(handler=cmd_feedback_export)
    return parser


class _WithCommonOptions:
    """Subcommand parsers that also accept the global options (after the command name)."""

    def __init__(self, subparsers, common: argparse.ArgumentParser) -> None:
        self.subparsers = subparsers
        self.common = common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, parents=[self.common], **kwargs)


def _add_answer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=int, help="number of passages (default from config)")
    parser.add_argument("--zone", help="only this zone (full or short name)")
    parser.add_argument("--retriever", choices=("hybrid", "dense", "bm25"), default="hybrid")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train-reader":
        args.training_options = extra  # its options are reader_training's, parsed there
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = load_settings(args.config, index_dir=args.index_dir)
    except ConfigError as exc:
        print(f"qa-bot: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    level = [settings.log_level, "INFO", "DEBUG"][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_guarded(args.handler, args, settings)


def run_guarded(handler, args, settings: Settings) -> int:
    """Turn every expected failure into one actionable line and a non-zero exit."""
    from qa_bot.embedding import ModelError
    from qa_bot.index import IndexProblem
    from qa_bot.parsing import InputError
    from qa_bot.service import QuestionError, UnknownZone
    from qa_bot.zones import ZoneError

    try:
        return handler(args, settings)
    except (ConfigError, IndexProblem, InputError, ModelError, QuestionError, UnknownZone,
            ZoneError) as exc:
        print(f"qa-bot: error: {exc}", file=sys.stderr)
    except LookupError as exc:
        print(f"qa-bot: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"qa-bot: error: cannot access{where}: {exc.strerror or exc}. Check free disk "
              "space and permissions of the index directory.", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_ERROR


# -- commands ------------------------------------------------------------------------------------
def _ingestor(settings: Settings, quiet: bool = False):
    from qa_bot.embedding import SentenceTransformerEmbedder
    from qa_bot.ingest import Ingestor

    embedder = SentenceTransformerEmbedder(settings.model, show_progress=not quiet)
    return Ingestor(settings, embedder, show_progress=not quiet)


def _print_report(report) -> int:
    for problem in report.warnings:
        print(f"warning: {problem}", file=sys.stderr)
    for problem in report.errors:
        print(f"refused: {problem}", file=sys.stderr)
    print(report.summary())
    return EXIT_PARTIAL if report.errors else EXIT_OK


def cmd_ingest(args, settings: Settings) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"qa-bot: error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    return _print_report(_ingestor(settings, args.quiet).ingest(args.paths))


def cmd_parse(args, settings: Settings) -> int:
    """Article by article: zone │ title │ byline │ paragraphs │ warnings. No index, no model."""
    from qa_bot.parsing.preview import article_rows, preview

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"qa-bot: error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    files, skipped = preview(args.paths)
    for path in skipped:
        print(f"skipped: {path}: not an issue file", file=sys.stderr)
    for parsed in files:
        if parsed.refusal is not None:
            print(f"refused: {parsed.refusal}", file=sys.stderr)
    if args.json:
        print(json.dumps(article_rows(files), ensure_ascii=False, indent=1))
    else:
        _print_parsed(files)
    return EXIT_PARTIAL if any(parsed.refusal for parsed in files) else EXIT_OK


def _print_parsed(files) -> None:
    for parsed in files:
        if parsed.refusal is not None:
            continue
        print(f"{parsed.path}: {len(parsed.articles)} articles "
              f"(issue {parsed.articles[0].issue})")
        for problem in parsed.file_warnings:
            print(f"  warning: {problem}")
        print("  zone │ title │ byline │ paragraphs │ warnings")
        for article, warnings in zip(parsed.articles, parsed.warnings, strict=True):
            byline = article.byline or "—"
            if article.byline_names and " ".join(article.byline_names) != article.byline:
                byline += f" [{'、'.join(article.byline_names)}]"
            notes = "; ".join(p.message for p in warnings) or "—"
            print(f"  {article.zone or '—'} │ {article.title} │ {byline} │ "
                  f"{len(article.paragraphs)} │ {notes}")


def cmd_remove(args, settings: Settings) -> int:
    return _print_report(_ingestor(settings, quiet=True).remove_issue(args.issue))


def cmd_rebuild(args, settings: Settings) -> int:
    return _print_report(_ingestor(settings, args.quiet).rebuild())


def _service(settings: Settings):
    """The answer service, building the index from the bundled corpus on first run."""
    from qa_bot.index import IndexStore
    from qa_bot.service import QAService

    store = IndexStore(settings.index_path)
    if not store.exists():
        corpus = Path(settings.corpus_dir)
        if not corpus.is_dir():
            store.load()  # raises IndexNotFound with what to do
        print(f"First run: building the index in {store.directory} from {corpus}/ …",
              file=sys.stderr)
        _print_report(_ingestor(settings).ingest([corpus]))
    service = QAService(settings, store=store)
    service.warm_up()
    return service


def cmd_ask(args, settings: Settings) -> int:
    from qa_bot.render import answer_json, answer_text
    from qa_bot.service import clean_question

    clean_question(args.question)  # an empty question is refused before the model loads
    service = _service(settings)
    answer = service.answer(args.question, k=args.k, zone=args.zone, mode=args.retriever)
    if args.json:
        print(answer_json(answer))
    else:
        print(answer_text(answer, color=sys.stdout.isatty(),
                          passage_min_ratio=settings.answer.passage_min_ratio))
    return EXIT_OK


def cmd_repl(args, settings: Settings) -> int:
    from qa_bot.repl import Repl

    return Repl(_service(settings), k=args.k, zone=args.zone, mode=args.retriever).run()


def cmd_stats(args, settings: Settings) -> int:
    from qa_bot.index import IndexStore

    stats = index_stats(IndexStore(settings.index_path))
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=1))
    else:
        for key, value in stats.items():
            print(f"{key:>16}: {value}")
    return EXIT_OK


def index_stats(store) -> dict:
    manifest = store.read_manifest()
    snapshot_dir = store.snapshots_dir / store.current_name()
    size = sum(p.stat().st_size for p in snapshot_dir.rglob("*") if p.is_file())
    chunks = sum(len(entry["chunk_ids"]) for entry in manifest.articles.values())
    return {
        "index": str(store.directory),
        "snapshot": store.current_name(),
        "issues": len(manifest.issues),
        "issue names": ", ".join(sorted(manifest.issues)),
        "articles": len(manifest.articles),
        "chunks": chunks,
        "model": manifest.model.get("name"),
        "fingerprint": manifest.model.get("fingerprint"),
        "dimension": manifest.model.get("dimension"),
        "dense index": manifest.dense.get("kind"),
        "size on disk": f"{size / 1e6:.1f} MB",
        "built at": manifest.built_at,
    }


def cmd_eval(args, settings: Settings) -> int:
    from qa_bot.evaluate import run_eval_command

    return run_eval_command(args, settings)


def cmd_train_answer(args, settings: Settings) -> int:
    from qa_bot.answer_training import run_train_command

    return run_train_command(args, settings)


def cmd_train_reader(args, settings: Settings) -> int:
    from qa_bot.reader_training import main as train_reader

    return train_reader(args.training_options)


def cmd_bot(args, settings: Settings) -> int:
    from qa_bot.telegram.app import TelegramUnreachable
    from qa_bot.telegram_bot import run_bot

    try:
        return run_bot(settings)
    except TelegramUnreachable as exc:
        print(f"qa-bot: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def cmd_feedback_export(args, settings: Settings) -> int:
    from qa_bot.index import IndexProblem, IndexStore
    from qa_bot.telegram.feedback import export_rows, read_rows

    store_path = args.store or Path(settings.telegram.feedback_path).expanduser()
    if not store_path.is_file():
        print(f"qa-bot: error: no feedback yet: {store_path} does not exist", file=sys.stderr)
        return EXIT_ERROR
    try:  # titles come from the index; without one, rows name the article id instead
        articles = IndexStore(settings.index_path).load().articles
    except IndexProblem as exc:
        print(f"warning: {exc}; eval rows will carry passage_id instead of title",
              file=sys.stderr)
        articles = {}
    eval_rows, review_rows = export_rows(
        read_rows(store_path), lambda article_id: getattr(articles.get(article_id), "title", None)
    )
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in eval_rows)
    if args.out:
        args.out.write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    if args.review:
        args.review.write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in review_rows),
            encoding="utf-8",
        )
    print(f"{len(eval_rows)} eval rows (👍), {len(review_rows)} answers to review (👎)"
          + ("" if args.review or not review_rows else "; write them with --review FILE"),
          file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
