from __future__ import annotations

import pytest

from cachecore import ConfigError, SecretCache
from cachecore_client import RetryPolicy, SecretsClient, reader_from_env


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://localhost:8015"),
        ({"CACHECORE_PORT": "2773"}, "http://localhost:2773"),
        ({"CACHECORE_PORT": "8016, 2773"}, "http://localhost:8016"),
        (
            {"CACHECORE_URL": "http://127.0.0.1:9000/", "CACHECORE_PORT": "1"},
            "http://127.0.0.1:9000",
        ),
        ({"CACHECORE_URL": "  "}, "http://localhost:8015"),
    ],
)
def test_the_base_url_comes_from_the_environment(environ, expected):
    assert SecretsClient(environ=environ).base_url == expected


def test_an_argument_beats_the_environment():
    client = SecretsClient(
        "http://[::1]:7000", environ={"CACHECORE_URL": "http://127.0.0.1:1"}
    )

    assert client.base_url == "http://[::1]:7000"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"CACHECORE_URL": "localhost:8015"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "ftp://localhost"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "http://localhost:8015/?x=1"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "http://u@localhost:8015"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "http://localhost:8015/?"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "http://localhost:8015#"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "http://localhost:8015/x#y"}, "CACHECORE_URL"),
        ({"CACHECORE_URL": "http://localhost:99999"}, "CACHECORE_URL"),
        ({"CACHECORE_PORT": "http"}, "CACHECORE_PORT"),
        ({"CACHECORE_PORT": "0"}, "CACHECORE_PORT"),
    ],
)
def test_a_bad_url_or_port_is_a_config_error_naming_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        SecretsClient(environ=environ)


def test_the_token_follows_the_servers_sources_in_order(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    environ = {
        "AWS_SESSION_TOKEN": "session",
        "AWS_TOKEN": f"file://{token_file}",
    }

    assert "from-a-file" in SecretsClient(environ=environ)._headers.values()
    assert (
        "cc"
        in SecretsClient(environ={**environ, "CACHECORE_TOKEN": "cc"})._headers.values()
    )
    assert "arg" in SecretsClient(token="arg", environ=environ)._headers.values()


def test_repr_hides_the_token():
    client = SecretsClient(token="sentinel-client-token-9Kd", environ={})

    assert "sentinel-client-token-9Kd" not in repr(client)
    assert "<hidden>" in repr(client)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": True},
        {"max_connections": 0},
        {"max_connections": "10"},
        {"max_connections": 2.5},
        {"max_connections": True},
        {"retry": 3},
    ],
)
def test_bad_client_arguments_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        SecretsClient(environ={}, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"backoff_base": -1},
        {"budget": float("inf")},
        {"backoff_max": "1"},
    ],
)
def test_bad_retry_policies_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


def test_the_pause_doubles_up_to_its_cap():
    policy = RetryPolicy(backoff_base=0.1, backoff_max=0.3)

    assert [policy.pause(n, 1.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]


def test_reader_from_env_gives_the_client_by_default():
    reader = reader_from_env({"CACHECORE_URL": "http://127.0.0.1:9"})

    assert isinstance(reader, SecretsClient)
    assert reader._build_fallback is None


def test_reader_from_env_can_give_a_fallback_or_the_in_process_cache(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with_fallback = reader_from_env({"CACHECORE_CLIENT_FALLBACK": "In-Process"})
    in_process = reader_from_env(
        {"CACHECORE_CLIENT_MODE": "in-process", "CACHECORE_TTL": "7"}
    )

    assert isinstance(with_fallback, SecretsClient)
    assert with_fallback._build_fallback is not None
    assert isinstance(in_process, SecretCache)
    assert in_process.config.ttl == 7


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CACHECORE_CLIENT_MODE", "remote"), ("CACHECORE_CLIENT_FALLBACK", "yes")],
)
def test_reader_from_env_refuses_an_unknown_choice(variable, value):
    with pytest.raises(ConfigError, match=variable):
        reader_from_env({variable: value})


@pytest.mark.parametrize(
    "url",
    [
        "http://app:sentinel-pw-4Rt@127.0.0.1:8015",
        "http://app:sentinel-pw-4Rt@[::1",  # not even a URL
        "http://app:p@sentinel-pw-4Rt@127.0.0.1:8015/x",
    ],
)
def test_a_url_with_a_password_is_refused_without_repeating_it(url):
    for make in (
        lambda: SecretsClient(url, environ={}),
        lambda: SecretsClient(environ={"CACHECORE_URL": url}),
    ):
        with pytest.raises(ConfigError) as caught:
            make()
        assert "sentinel-pw-4Rt" not in str(caught.value)
