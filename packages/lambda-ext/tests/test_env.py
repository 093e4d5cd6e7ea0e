from __future__ import annotations

import re

import pytest

from cachecore import Config, ConfigError
from cachecore_lambda._env import go_duration_seconds, read_settings


def config_of(environ):
    return Config.from_env(read_settings(environ).environ)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("60m", 3600),
        ("90s", 90),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("0", 0),
        ("2h0m0s", 7200),
        ("1500ms", 1.5),
        ("+5s", 5),
        ("1m30.5s", 90.5),
    ],
)
def test_go_durations_read_as_go_reads_them(raw, seconds):
    assert go_duration_seconds("CACHE_EXTENSION_TTL", raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "60", "5 m", "-5s", "1d", "m", "1h-5m", "inf"])
def test_bad_go_durations_name_the_variable(raw):
    with pytest.raises(ConfigError, match="CACHE_EXTENSION_TTL must be a Go duration"):
        go_duration_seconds("CACHE_EXTENSION_TTL", raw)


def test_go_ttl_sets_the_ttl():
    assert config_of({"CACHE_EXTENSION_TTL": "10m"}).ttl == 600


def test_go_ttl_of_part_of_a_second_is_refused_not_rounded():
    with pytest.raises(ConfigError, match="whole number of seconds"):
        config_of({"CACHE_EXTENSION_TTL": "1500ms"})


def test_aws_names_set_their_settings():
    config = config_of(
        {
            "SECRETS_MANAGER_TTL": "120",
            "SSM_PARAMETER_STORE_TTL": "30",
            "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "50",
            "SECRETS_MANAGER_TIMEOUT_MILLIS": "2500",
        }
    )

    assert (config.ttl, config.parameter_ttl) == (120, 30)
    assert config.max_entries == 50
    assert config.upstream_timeout == 2.5


def test_aws_timeout_of_zero_means_the_longest_timeout():
    assert config_of({"SECRETS_MANAGER_TIMEOUT_MILLIS": "0"}).upstream_timeout == 300


def test_cachecore_name_wins_over_both_others_and_a_warning_names_them():
    settings = read_settings(
        {
            "CACHECORE_TTL": "7",
            "SECRETS_MANAGER_TTL": "120",
            "CACHE_EXTENSION_TTL": "1h",
        }
    )

    assert Config.from_env(settings.environ).ttl == 7
    expected = (
        "CACHECORE_TTL is set and wins; ignoring SECRETS_MANAGER_TTL, "
        "CACHE_EXTENSION_TTL"
    )
    assert settings.warnings == [expected]


def test_aws_ttl_wins_over_the_go_ttl():
    settings = read_settings(
        {"SECRETS_MANAGER_TTL": "120", "CACHE_EXTENSION_TTL": "1h"}
    )

    assert Config.from_env(settings.environ).ttl == 120
    assert "ignoring CACHE_EXTENSION_TTL" in settings.warnings[0]


def test_no_warning_when_one_name_is_set():
    assert read_settings({"SECRETS_MANAGER_TTL": "120"}).warnings == []


def test_ports_default_to_both_earlier_extensions():
    assert config_of({}).ports == (8015, 2773)


def test_aws_port_moves_the_aws_port_and_keeps_8015():
    assert config_of({"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "3000"}).ports == (
        8015,
        3000,
    )
    assert config_of({"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "8015"}).ports == (
        8015,
    )


def test_cachecore_port_wins_over_the_aws_port_with_a_warning():
    settings = read_settings(
        {"CACHECORE_PORT": "9000", "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "3000"}
    )

    assert Config.from_env(settings.environ).ports == (9000,)
    assert "ignoring PARAMETERS_SECRETS_EXTENSION_HTTP_PORT" in settings.warnings[0]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "http"}, "HTTP_PORT must be"),
        ({"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "0"}, "HTTP_PORT must be"),
        ({"SECRETS_MANAGER_TIMEOUT_MILLIS": "-1"}, "TIMEOUT_MILLIS must be a whole"),
        (
            {"SECRETS_MANAGER_TIMEOUT_MILLIS": "400000"},
            "milliseconds from 0 to 300000, got '400000'",
        ),
        ({"CACHE_EXTENSION_TTL": "25h"}, "at most 24h (86400 s), got '25h'"),
        ({"CACHE_EXTENSION_TTL": "\u0661\u0662s"}, "must be a Go duration"),
        ({"SECRETS_MANAGER_TTL": "\u0663\u0660\u0660"}, "SECRETS_MANAGER_TTL must be"),
        ({"SECRETS_MANAGER_TTL": "1_000"}, "SECRETS_MANAGER_TTL must be"),
        (
            {
                "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "false",
                "SECRETS_MANAGER_TTL": "bogus",
            },
            "SECRETS_MANAGER_TTL must be",
        ),
        ({"SECRETS_MANAGER_TIMEOUT_MILLIS": "1.5"}, "TIMEOUT_MILLIS must be a whole"),
        ({"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "loud"}, "LOG_LEVEL must be one"),
        ({"PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "yes"}, "true or false"),
        ({"CACHECORE_SHUTDOWN_TIMEOUT": "5"}, "CACHECORE_SHUTDOWN_TIMEOUT must be"),
        ({"CACHECORE_PREFETCH": ",".join(f"s{i}" for i in range(101))}, "at most 100"),
    ],
)
def test_bad_values_name_their_variable(environ, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        read_settings(environ)


def test_bad_aws_ttl_is_reported_under_its_own_name():
    with pytest.raises(ConfigError, match="SECRETS_MANAGER_TTL must be an integer"):
        config_of({"SECRETS_MANAGER_TTL": "soon"})


@pytest.mark.parametrize(
    "environ",
    [
        {"PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "false"},
        {"PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "0"},
        {"PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "00"},
        {
            "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "FALSE",
            "SECRETS_MANAGER_TTL": "300",
        },
    ],
)
def test_aws_switches_that_turn_caching_off_set_both_ttls_to_zero(environ):
    config = config_of(environ)

    assert (config.ttl, config.parameter_ttl) == (0, 0)


def test_log_levels_of_aws_become_python_levels():
    assert read_settings({}).log_level == "INFO"
    level = read_settings({"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "WARN"}).log_level
    assert level == "WARNING"
    assert read_settings({"CACHECORE_LOG_LEVEL": "none"}).log_level == "CRITICAL"


def test_prefetch_ids_are_split_trimmed_and_deduplicated():
    settings = read_settings({"CACHECORE_PREFETCH": " db , api-key,db,, "})

    assert settings.prefetch == ("db", "api-key")


def test_unused_aws_variables_are_named_in_a_warning():
    settings = read_settings({"SSM_PARAMETER_STORE_TIMEOUT_MILLIS": "100"})

    assert settings.warnings[0].startswith("SSM_PARAMETER_STORE_TIMEOUT_MILLIS is not")


def test_the_session_token_is_the_token_inside_lambda():
    config = config_of({"AWS_SESSION_TOKEN": "session-token-of-the-function"})

    assert config.token == "session-token-of-the-function"
    assert config.token_source == "AWS_SESSION_TOKEN"
