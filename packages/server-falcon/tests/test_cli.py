"""Start-up checks of cachecore-server that end before any port is bound."""

from __future__ import annotations

import pytest

from cachecore_server import main

TOKEN_VARIABLES = (
    "CACHECORE_TOKEN",
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "CACHECORE_AUTH",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("CACHECORE_TTL", "abc"),
        ("CACHECORE_PORT", "99999"),
        ("CACHECORE_MAX_ENTRIES", "-3"),
        ("CACHECORE_AUTH", "off"),
        ("CACHECORE_UPSTREAM_TIMEOUT", "soon"),
        ("CACHECORE_REQUEST_TIMEOUT", "-1"),
        ("CACHECORE_MAX_CONNECTIONS", "0"),
    ],
)
def test_bad_setting_stops_start_with_exit_2_naming_it(
    monkeypatch, capsys, variable, raw
):
    monkeypatch.setenv("CACHECORE_TOKEN", "t")
    monkeypatch.setenv(variable, raw)

    assert main([]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"cachecore-server: {variable} must be")
    assert err.count("\n") == 1


def test_no_token_source_stops_start_and_says_what_to_set(capsys):
    assert main([]) == 2

    err = capsys.readouterr().err
    for name in ("CACHECORE_TOKEN", "AWS_SESSION_TOKEN", "CACHECORE_AUTH=none"):
        assert name in err


def test_bad_threads_stops_start(monkeypatch, capsys):
    monkeypatch.setenv("CACHECORE_AUTH", "none")

    assert main(["--threads", "0"]) == 2

    assert "--threads must be an integer from 1 to 1024" in capsys.readouterr().err


def test_unreadable_token_file_stops_start_without_reading_it(
    monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("CACHECORE_TOKEN", f"file://{tmp_path}/missing")

    assert main([]) == 2

    assert "CACHECORE_TOKEN names the token file" in capsys.readouterr().err


def test_no_region_stops_start(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CACHECORE_AUTH", "none")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    assert main([]) == 2

    assert "no AWS region is set" in capsys.readouterr().err


def test_granian_not_installed_stops_start_with_exit_2_naming_the_extra(
    monkeypatch, capsys
):
    import sys

    monkeypatch.setenv("CACHECORE_AUTH", "none")
    monkeypatch.setitem(sys.modules, "granian", None)  # import granian fails

    assert main(["--server", "granian"]) == 2

    err = capsys.readouterr().err
    assert "cachecore-server[granian]" in err
    assert err.count("\n") == 1


def test_granian_with_several_ports_stops_start_with_exit_2(monkeypatch, capsys):
    pytest.importorskip("granian", reason="the granian extra is not installed")
    monkeypatch.setenv("CACHECORE_AUTH", "none")
    monkeypatch.setenv("CACHECORE_PORT", "8015,2773")

    assert main(["--server", "granian"]) == 2

    assert "CACHECORE_PORT" in capsys.readouterr().err


def test_malloc_arenas_are_limited_unless_the_user_set_their_own(monkeypatch):
    import sys as _sys

    from cachecore_server._entry import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    # glibc (this test's platform) has mallopt; elsewhere nothing is done.
    assert limit_malloc_arenas() is _sys.platform.startswith("linux")


@pytest.fixture
def root_logging():
    """main() gives the root logger a handler of its own; put pytest's back."""
    import logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:], root.level = saved


@pytest.mark.parametrize(
    ("options", "server"),
    [
        ([], "waitress"),
        (["--server", "waitress"], "waitress"),
        (["--server", "gunicorn"], "gunicorn"),
    ],
)
def test_waitress_is_run_and_named_at_start_unless_another_is_chosen(
    monkeypatch, capsys, root_logging, options, server
):
    import socket

    from cachecore_server import _cli

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CACHECORE_AUTH", "none")
    monkeypatch.setenv("CACHECORE_PORT", str(port))
    served = []
    monkeypatch.setattr(_cli, "serve", lambda app, **kwargs: served.append(kwargs))

    assert main(options) == 0

    assert [s["server"] for s in served] == [server]
    err = capsys.readouterr().err
    assert f" INFO cachecore_server: starting {server} with 8 threads: " in err


def test_help_names_waitress_as_the_default_server(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])

    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "WSGI server to run (default waitress)" in out
