"""What every benchmark of ``bench/`` shares: moto, the sidecar, ports, RSS, HTTP.

Everything listens on loopback only, on free ports. Every process started here is
stopped here, by its own pid, by the ``with`` block that started it.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REGION = "us-east-1"
TOKEN = "bench-token-not-a-secret"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support import free_port, stop  # noqa: E402
from support import moto_server as moto_server  # noqa: E402  (run, upstream)
from support import sidecar_env as _test_env  # noqa: E402

from cachecore_server._serve import DEFAULT_SERVER  # noqa: E402

START_TIMEOUT = 30.0


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    """Return once ``port`` accepts; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{what} did not listen on {port} in {START_TIMEOUT}s")


def rss_kib(pid: int) -> int:
    """Resident set size of one process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, in KiB (shared pages counted twice)."""
    total = rss_kib(pid)
    for child in children(pid):
        total += tree_rss_kib(child)
    return total


def secretsmanager(url: str) -> Any:
    """A boto3 Secrets Manager client of moto at ``url``."""
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bench-key",
        aws_secret_access_key="bench-secret",
    )


def create_secrets(url: str, names: list[str], value: str) -> None:
    """Create each of ``names`` in moto, one at a time (moto fails at several)."""
    client = secretsmanager(url)
    for name in names:
        client.create_secret(Name=name, SecretString=value)


def sidecar_env(moto_url: str, **settings: str) -> dict[str, str]:
    """The tests' sidecar environment in front of moto, with the bench's token."""
    return _test_env(moto_url, CACHECORE_TOKEN=TOKEN, **settings)


@dataclass
class Server:
    """A server process on a loopback port."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The pid of the process started (the main one of the server)."""
        return self.process.pid


@contextlib.contextmanager
def run_server(command: list[str], env: dict[str, str], port: int) -> Iterator[Server]:
    """Run ``command`` (which binds ``port``) until the block ends."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        try:
            wait_for_port(port, process, " ".join(command[:3]))
        except RuntimeError:
            log.seek(0)
            sys.stderr.write(log.read()[-3000:].decode(errors="replace"))
            raise
        yield Server(port, process)
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def sidecar(
    moto_url: str, server: str = DEFAULT_SERVER, threads: int = 8, **settings: str
) -> Iterator[Server]:
    """cachecore-server with ``--server server`` in front of moto."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "cachecore_server",
        "--server",
        server,
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--log-level",
        "WARNING",
    ]
    with run_server(command, sidecar_env(moto_url, **settings), port) as running:
        yield running


def get(
    port: int, target: str, connection: http.client.HTTPConnection | None = None
) -> tuple[int, bytes]:
    """Status and body of one GET with the token; on ``connection`` if given."""
    own = connection is None
    conn = connection or http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", target, headers={TOKEN_HEADER: TOKEN})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def upstream_calls(port: int, operation: str = "GetSecretValue") -> int:
    """The sidecar's count of calls to AWS of ``operation``, from ``/metrics``."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request(
            "GET",
            "/metrics",
            headers={TOKEN_HEADER: TOKEN, "Authorization": f"Bearer {TOKEN}"},
        )
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    pattern = rf'^cachecore_upstream_calls_total{{operation="{operation}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0
