"""Helpers of the end-to-end tests: free ports, moto, waiting for a process to
listen, stopping it by its pid, and raw HTTP requests that send the target
unchanged."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from faultproxy import FaultProxy

HOST = "127.0.0.1"
REGION = "us-east-1"
TOKEN = "sentinel-token-e2e-Vb3"
START_TIMEOUT = 30.0

#: granian is an optional extra; it gives the app's answers but not the limits of
#: the other two servers (see cachecore_server._granian), so it joins the tests of
#: the app's answers only.
GRANIAN = pytest.param(
    "granian",
    marks=pytest.mark.skipif(
        find_spec("granian") is None,
        reason="granian is not installed (the cachecore-server[granian] extra)",
    ),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace")[-2000:] if log else ""
            pytest.fail(
                f"{what} exited at start with code {process.returncode}\n{said}"
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"{what} did not listen on {port} within {START_TIMEOUT}s")


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on a free loopback port, for the block; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "moto_server")
        yield f"http://{HOST}:{port}"
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def secret_string(self) -> str:
        """SecretString of a JSON answer of the AWS dialect."""
        return str(json.loads(self.body)["SecretString"])


def request(
    port: int,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 15.0,
) -> Answer:
    """One HTTP request exactly as given: the target is sent without re-encoding."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


@dataclass
class Sidecar:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, target: str, **kwargs: object) -> Answer:
        return request(self.port, "GET", target, **kwargs)  # type: ignore[arg-type]

    def post(self, target: str, **kwargs: object) -> Answer:
        return request(self.port, "POST", target, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> int:
        return stop(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def server_command() -> list[str]:
    found = shutil.which("cachecore-server", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "cachecore_server"]


def sidecar_env(moto_url: str, **settings: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CACHECORE_", "AWS_"))
    }
    env.update(
        AWS_ACCESS_KEY_ID="test-key",
        AWS_SECRET_ACCESS_KEY="test-secret",
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_url,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    env.update(settings)
    return env


def env_through(proxy: FaultProxy, **settings: str) -> dict[str, str]:
    """The environment of a sidecar that requires ``TOKEN`` and reaches Secrets
    Manager through ``proxy``, with ``settings`` on top."""
    env = sidecar_env(proxy.upstream_url, CACHECORE_TOKEN=TOKEN)
    env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = proxy.url
    env.update(settings)
    return env
