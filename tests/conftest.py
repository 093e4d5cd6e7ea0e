"""Real parts for the end-to-end tests: moto in server mode and cachecore-server,
each a subprocess on a free loopback port, reached over HTTP.

Every test makes secrets under a name of its own, so one moto serves the session.
Every process a fixture starts is stopped by that fixture, by its own pid.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from faultproxy import FaultProxy
from support import (
    REGION,
    Sidecar,
    free_port,
    moto_server,
    server_command,
    sidecar_env,
    wait_for_port,
)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _moto_client(service: str, moto_url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )


@pytest.fixture(scope="session")
def secretsmanager(moto_url: str):  # type: ignore[no-untyped-def]
    client = _moto_client("secretsmanager", moto_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def ssm(moto_url: str):  # type: ignore[no-untyped-def]
    """Parameter Store of the session's moto."""
    client = _moto_client("ssm", moto_url)
    yield client
    client.close()


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of moto; stopped after the test. Point a sidecar at it
    with ``support.env_through``."""
    with FaultProxy(moto_url) as running:
        yield running


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names of secrets that no other test uses."""
    run = uuid.uuid4().hex[:8]
    return lambda name: f"e2e-{run}/{name}"


def _sidecars(moto_url: str) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []
    logs = tempfile.TemporaryDirectory()

    def start(
        *args: str, server: str | None = None, env: dict[str, str] | None = None
    ) -> Sidecar:
        """``server`` is passed as ``--server``; ``None`` leaves the command's own
        default, as a user who names no server gets it."""
        port = free_port()
        log = Path(logs.name) / f"sidecar-{port}.log"
        choice = ["--server", server] if server is not None else []
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*server_command(), *choice, "--port", str(port), *args],
                env=env if env is not None else sidecar_env(moto_url),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        sidecar = Sidecar(port, process, log)
        started.append(sidecar)
        named = server if server is not None else "no --server"
        wait_for_port(port, process, f"cachecore-server ({named})", log)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()
    logs.cleanup()


@pytest.fixture
def start_sidecar(moto_url: str) -> Iterator[Callable[..., Sidecar]]:
    """Start cachecore-server with the given environment; stopped after the test."""
    yield from _sidecars(moto_url)


@pytest.fixture(scope="module")
def start_module_sidecar(moto_url: str) -> Iterator[Callable[..., Sidecar]]:
    """Like ``start_sidecar``, for servers that every test of a module shares."""
    yield from _sidecars(moto_url)
