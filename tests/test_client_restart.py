"""The client survives a restart of the sidecar: a new process on the same port
serves the next call within the retry budget, and with the sidecar down an
in-process fallback, when it is switched on, answers instead."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from client_support import client_env, in_process, sidecar_client
from support import free_port, server_command, stop, wait_for_port

import cachecore_client as cc
from cachecore_client import RetryPolicy


@pytest.fixture
def sidecar_on(
    moto_url, tmp_path
) -> Iterator[Callable[[int], subprocess.Popen[bytes]]]:
    """Start cachecore-server on a port of the test's choosing; all stopped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> subprocess.Popen[bytes]:
        log = Path(tmp_path) / f"sidecar-{len(started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*server_command(), "--port", str(port)],
                env=client_env(moto_url),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        wait_for_port(port, process, "cachecore-server", log)
        return process

    yield start
    for process in started:
        stop(process)


def test_a_sidecar_restarted_between_two_calls_serves_the_second(
    sidecar_on, secretsmanager, unique
):
    name = unique("restart")
    secretsmanager.create_secret(Name=name, SecretString="before")
    port = free_port()
    first = sidecar_on(port)
    client = sidecar_client(port, retry=RetryPolicy())
    assert client.get_secret_string(name) == "before"

    stop(first)
    secretsmanager.put_secret_value(SecretId=name, SecretString="after")
    sidecar_on(port)
    started = time.monotonic()

    assert client.get_secret_string(name) == "after"  # the new process's own cache
    assert time.monotonic() - started < client.retry.budget


def test_a_call_made_while_the_sidecar_is_down_succeeds_once_it_is_back(
    sidecar_on, secretsmanager, unique
):
    name = unique("down")
    secretsmanager.create_secret(Name=name, SecretString="value")
    port = free_port()
    stop(sidecar_on(port))
    patient = RetryPolicy(attempts=100, backoff_base=0.05, backoff_max=0.2, budget=20)
    client = sidecar_client(port, retry=patient)
    restart = threading.Timer(0.3, sidecar_on, args=(port,))
    restart.start()
    try:
        assert client.get_secret_string(name) == "value"
    finally:
        restart.join()


def test_with_the_sidecar_down_and_fallback_on_the_in_process_cache_answers(
    sidecar_on, moto_url, secretsmanager, unique, caplog
):
    name = unique("fallback")
    secretsmanager.create_secret(Name=name, SecretString='{"password": "p"}')
    port = free_port()
    stop(sidecar_on(port))
    client = sidecar_client(port, fallback=lambda: in_process(moto_url))

    with caplog.at_level(logging.WARNING, logger="cachecore_client"):
        assert client.get_secret_json(name) == {"password": "p"}

    assert "cannot be reached" in caplog.text
    assert "in-process fallback" in caplog.text
    client.close()


def test_with_the_sidecar_down_and_no_fallback_the_error_is_sidecar_unavailable(
    sidecar_on, unique
):
    port = free_port()
    stop(sidecar_on(port))

    with pytest.raises(cc.SidecarUnavailableError):
        sidecar_client(port).get_secret_string(unique("nothing"))
