import pytest

from qa_bot.config import ConfigError, load_settings


def test_defaults_file_environment_and_overrides(tmp_path):
    config = tmp_path / "qa-bot.toml"
    config.write_text('index_dir = "from-file"\n[retrieval]\ntop_k = 7\n'
                      '[telegram]\nallowed_users = [1, 2]\n', encoding="utf-8")
    settings = load_settings(config, environ={})
    assert settings.index_dir == "from-file"
    assert settings.retrieval.top_k == 7
    assert settings.telegram.allowed_users == (1, 2)
    assert settings.model.name == "bundled:multilingual-e5-small"

    environ = {"QA_BOT_INDEX_DIR": "from-env", "QA_BOT_RETRIEVAL_TOP_K": "9",
               "QA_BOT_TELEGRAM_ALLOWED_CHATS": "-100,5", "QA_BOT_TELEGRAM_OPEN_TO_EVERYONE": "yes"}
    settings = load_settings(config, environ=environ)
    assert (settings.index_dir, settings.retrieval.top_k) == ("from-env", 9)
    assert settings.telegram.allowed_chats == (-100, 5)
    assert settings.telegram.open_to_everyone is True
    assert load_settings(config, environ=environ, index_dir="flag").index_dir == "flag"


def test_every_documented_default_parses():
    # config/qa-bot.toml documents every setting; with its comments it must load as defaults.
    assert load_settings(environ={}).retrieval.fusion == "score"


@pytest.mark.parametrize(("text", "environ", "message"), [
    ("[retrieval]\ntop_k = 'many'\n", {}, "top_k"),
    ("[retrieval]\nno_such = 1\n", {}, "unknown setting"),
    ("[telegram]\ntoken = 'secret'\n", {}, "QA_BOT_TELEGRAM_TOKEN"),
    ("", {"QA_BOT_TELEGRAM_OPEN_TO_EVERYONE": "maybe"}, "QA_BOT_TELEGRAM_OPEN_TO_EVERYONE"),
    ("not toml [", {}, "not valid TOML"),
])
def test_bad_settings_say_which_and_where(tmp_path, text, environ, message):
    config = tmp_path / "qa-bot.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ=environ)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})
