"""Start-up of the servers: the limit on open files fits the connection limit."""

from __future__ import annotations

import logging
import resource

from cachecore_server import _serve


class FakeLimits:
    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if limits[0] > self.limits[1]:
            raise ValueError("over the hard limit")
        self.limits = limits


def test_soft_file_limit_is_raised_to_fit_the_connections(monkeypatch, caplog):
    limits = FakeLimits(soft=256, hard=4096)
    monkeypatch.setattr(_serve.resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(_serve.resource, "setrlimit", limits.setrlimit)

    _serve.ensure_file_limit(1000)

    assert limits.limits == (1064, 4096)
    assert not caplog.records


def test_too_low_hard_file_limit_is_warned_about(monkeypatch, caplog):
    limits = FakeLimits(soft=256, hard=512)
    monkeypatch.setattr(_serve.resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(_serve.resource, "setrlimit", limits.setrlimit)

    with caplog.at_level(logging.WARNING):
        _serve.ensure_file_limit(1000)

    assert limits.limits == (512, 512)
    assert "CACHECORE_MAX_CONNECTIONS" in caplog.text


def test_serve_without_a_server_runs_waitress(monkeypatch):
    ran = []
    monkeypatch.setattr(_serve, "ensure_file_limit", lambda connections: None)
    monkeypatch.setattr(_serve, "_serve_waitress", lambda *a: ran.append("waitress"))
    monkeypatch.setattr(_serve, "_serve_gunicorn", lambda *a: ran.append("gunicorn"))

    _serve.serve(
        object(), host="127.0.0.1", ports=[8015], request_timeout=5, max_connections=1
    )

    assert ran == ["waitress"]
    assert _serve.DEFAULT_SERVER == "waitress"
