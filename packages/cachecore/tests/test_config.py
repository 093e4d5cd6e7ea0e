from __future__ import annotations

import pytest

from cachecore import Config, ConfigError

TOKEN = "sentinel-token-Xy7"


def test_defaults_are_the_documented_ones():
    config = Config.from_env({})

    assert config.ttl == 300
    assert config.max_entries == 1000
    assert config.auth == "token"
    assert config.token is None
    assert (config.host, config.port) == ("127.0.0.1", 8015)
    assert config.upstream_timeout == 5.0


def test_environment_is_read():
    config = Config.from_env(
        {
            "CACHECORE_TTL": "60",
            "CACHECORE_MAX_ENTRIES": "10",
            "CACHECORE_AUTH": "none",
            "CACHECORE_HOST": "::1",
            "CACHECORE_PORT": "2773",
            "CACHECORE_UPSTREAM_TIMEOUT": "0.5",
        }
    )

    assert (config.ttl, config.max_entries, config.auth) == (60, 10, "none")
    assert (config.host, config.port, config.upstream_timeout) == ("::1", 2773, 0.5)


def test_argument_beats_environment_beats_default():
    env = {"CACHECORE_TTL": "60", "CACHECORE_PORT": "9000"}

    config = Config.from_env(env, ttl=5, port=None)

    assert config.ttl == 5
    assert config.port == 9000
    assert config.max_entries == 1000


@pytest.mark.parametrize(
    ("variable", "raw", "accepts"),
    [
        ("CACHECORE_TTL", "abc", "integer from 0 to 86400"),
        ("CACHECORE_TTL", "-1", "integer from 0 to 86400"),
        ("CACHECORE_TTL", "86401", "integer from 0 to 86400"),
        ("CACHECORE_TTL", "1.5", "integer from 0 to 86400"),
        ("CACHECORE_TTL", "1_000", "integer from 0 to 86400"),
        ("CACHECORE_TTL", "\u0661\u0662", "integer from 0 to 86400"),
        ("CACHECORE_MAX_STALE", "1_0", "number of seconds from 0 to 604800"),
        ("CACHECORE_MAX_ENTRIES", "0", "integer from 1 to"),
        ("CACHECORE_PORT", "70000", "a port from 1 to 65535"),
        ("CACHECORE_PORT", "http", "a port from 1 to 65535"),
        ("CACHECORE_PORT", "8015,8015", "distinct ports"),
        ("CACHECORE_PORT", "8015,", "separated by commas"),
        ("CACHECORE_PORT", "1,2,3,4,5,6,7,8,9", "up to 8 distinct"),
        ("CACHECORE_PARAMETER_TTL", "-5", "integer from 0 to 86400"),
        ("CACHECORE_AUTH", "maybe", "'token' or 'none'"),
        ("CACHECORE_UPSTREAM_TIMEOUT", "0", "number of seconds above 0"),
        ("CACHECORE_UPSTREAM_TIMEOUT", "nan", "number of seconds above 0"),
        ("CACHECORE_UPSTREAM_TIMEOUT", "1e9", "at most 300"),
        ("CACHECORE_HOST", "a b", "without spaces"),
        ("CACHECORE_TTL_JITTER", "0.9", "a number from 0 to 0.5"),
        ("CACHECORE_REFRESH_MIN_INTERVAL", "-1", "number of seconds from 0 to 3600"),
        ("CACHECORE_MAX_STALE", "forever", "number of seconds from 0 to 604800"),
        ("CACHECORE_BACKOFF_BASE_SECONDS", "0", "number of seconds above 0"),
        ("CACHECORE_BACKOFF_GROWTH", "0.5", "a number from 1 to 10"),
        ("CACHECORE_BACKOFF_MAX_SECONDS", "inf", "number of seconds above 0"),
        ("CACHECORE_REFRESH_AHEAD", "1", "a number from 0 to 0.9"),
        ("CACHECORE_REQUEST_TIMEOUT", "0", "number of seconds from 0.1 to 300"),
        ("CACHECORE_REQUEST_TIMEOUT", "1e-9", "number of seconds from 0.1 to 300"),
        ("CACHECORE_REQUEST_TIMEOUT", "301", "from 0.1 to 300"),
        ("CACHECORE_MAX_CONNECTIONS", "0", "integer from 1 to 65535"),
        ("CACHECORE_MAX_CONNECTIONS", "lots", "integer from 1 to 65535"),
    ],
)
def test_bad_environment_value_names_the_variable_and_what_it_accepts(
    variable, raw, accepts
):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: raw})

    message = str(caught.value)
    assert message.startswith(variable + " must be")
    assert accepts in message
    assert repr(raw) in message


def test_bad_argument_names_the_argument():
    with pytest.raises(ConfigError, match=r"^ttl must be an integer"):
        Config(ttl=-5)
    with pytest.raises(ConfigError, match="unknown setting"):
        Config.from_env({}, tll=5)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        Config(port=0)


def test_token_comes_from_the_first_source_that_is_set():
    env = {
        "AWS_SESSION_TOKEN": "session",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container",
        "CACHECORE_TOKEN": "",
    }

    config = Config.from_env(env)

    assert (config.token, config.token_source) == ("session", "AWS_SESSION_TOKEN")
    env["AWS_TOKEN"] = "aws"
    assert Config.from_env(env).token == "aws"
    env["CACHECORE_TOKEN"] = "mine"
    assert Config.from_env(env).token == "mine"


def test_token_file_is_read_and_stripped(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")

    config = Config.from_env({"CACHECORE_TOKEN": f"file://{path}"})

    assert config.token == TOKEN
    assert config.token_source == "CACHECORE_TOKEN"


def test_missing_token_file_names_variable_and_path(tmp_path):
    path = tmp_path / "absent"

    with pytest.raises(ConfigError) as caught:
        Config.from_env({"AWS_SESSION_TOKEN": f"file://{path}"})

    assert "AWS_SESSION_TOKEN" in str(caught.value)
    assert str(path) in str(caught.value)


def test_empty_token_file_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("  \n")

    with pytest.raises(ConfigError, match="is empty"):
        Config.from_env({"CACHECORE_TOKEN": f"file://{path}"})


def test_repr_hides_the_token():
    config = Config.from_env({"CACHECORE_TOKEN": TOKEN})

    assert TOKEN not in repr(config)
    assert TOKEN not in str(config)
    assert "token=<hidden>" in repr(config)


def test_policy_settings_have_documented_defaults():
    config = Config.from_env({})

    assert config.ttl_jitter == 0.1
    assert config.refresh_min_interval == 1.0
    assert config.max_stale == 3600.0
    assert (config.backoff_base_seconds, config.backoff_growth) == (1.0, 2.0)
    assert config.backoff_max_seconds == 60.0
    assert config.refresh_ahead == 0.0


def test_policy_settings_are_read_from_the_environment():
    config = Config.from_env(
        {
            "CACHECORE_TTL_JITTER": "0",
            "CACHECORE_REFRESH_MIN_INTERVAL": "2.5",
            "CACHECORE_MAX_STALE": "0",
            "CACHECORE_BACKOFF_BASE_SECONDS": "0.5",
            "CACHECORE_BACKOFF_GROWTH": "3",
            "CACHECORE_BACKOFF_MAX_SECONDS": "90",
            "CACHECORE_REFRESH_AHEAD": "0.2",
        }
    )

    assert (config.ttl_jitter, config.refresh_min_interval, config.max_stale) == (
        0,
        2.5,
        0,
    )
    assert (config.backoff_base_seconds, config.backoff_growth) == (0.5, 3)
    assert (config.backoff_max_seconds, config.refresh_ahead) == (90, 0.2)


def test_server_limits_have_documented_defaults_and_are_read():
    assert (Config.from_env({}).request_timeout, Config().max_connections) == (
        5.0,
        256,
    )

    config = Config.from_env(
        {"CACHECORE_REQUEST_TIMEOUT": "0.5", "CACHECORE_MAX_CONNECTIONS": "4"}
    )

    assert (config.request_timeout, config.max_connections) == (0.5, 4)


def test_backoff_cap_below_its_base_is_refused_naming_both():
    with pytest.raises(ConfigError) as caught:
        Config.from_env(
            {
                "CACHECORE_BACKOFF_BASE_SECONDS": "10",
                "CACHECORE_BACKOFF_MAX_SECONDS": "5",
            }
        )

    assert "CACHECORE_BACKOFF_MAX_SECONDS" in str(caught.value)
    assert "CACHECORE_BACKOFF_BASE_SECONDS" in str(caught.value)


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_token_file_that_is_no_plain_small_file_is_refused_at_once(tmp_path, kind):
    import os

    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)  # reading it would block forever
    elif kind == "device":
        path = "/dev/zero"  # reading it would never end
    else:
        path = tmp_path / "huge"
        path.write_bytes(b"x" * (64 * 1024 + 1))

    with pytest.raises(ConfigError, match="not a regular file|over 65536 bytes"):
        Config.from_env({"CACHECORE_TOKEN": f"file://{path}"})


def test_several_ports_from_the_environment_first_is_the_port():
    config = Config.from_env({"CACHECORE_PORT": " 8015 , 2773 "})

    assert config.ports == (8015, 2773)
    assert config.port == 8015


def test_a_port_argument_replaces_every_port_of_the_environment():
    config = Config.from_env({"CACHECORE_PORT": "8015,2773"}, port=9000)

    assert config.ports == (9000,)
    assert config.port == 9000


def test_ports_given_directly_set_the_port():
    assert Config(ports=(2773, 8015)).port == 2773
    assert Config(port=9001).ports == (9001,)


def test_parameter_ttl_defaults_to_the_ttl_and_can_differ():
    assert Config.from_env({}).parameter_ttl is None
    config = Config.from_env({"CACHECORE_TTL": "60", "CACHECORE_PARAMETER_TTL": "5"})
    assert (config.ttl, config.parameter_ttl) == (60, 5)


def test_log_format_and_metrics_names_are_read_and_default_off():
    default = Config.from_env({})
    config = Config.from_env(
        {"CACHECORE_LOG_FORMAT": " JSON ", "CACHECORE_METRICS_NAMES": "True"}
    )

    assert (default.log_format, default.metrics_names) == ("text", False)
    assert (config.log_format, config.metrics_names) == ("json", True)
    assert Config.from_env({"CACHECORE_METRICS_NAMES": "0"}).metrics_names is False
    assert (
        Config.from_env({"CACHECORE_LOG_FORMAT": "json"}, log_format="text").log_format
        == "text"
    )


@pytest.mark.parametrize(
    ("variable", "raw", "rule"),
    [
        ("CACHECORE_LOG_FORMAT", "yaml", "must be 'text' or 'json'"),
        ("CACHECORE_METRICS_NAMES", "yes", "must be true or false"),
    ],
)
def test_bad_log_format_or_metrics_names_names_the_variable(variable, raw, rule):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: raw})

    assert variable in str(caught.value) and rule in str(caught.value)
    assert repr(raw) in str(caught.value)
