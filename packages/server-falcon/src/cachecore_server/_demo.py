"""``cachecore-server --demo``: an embedded Secrets Manager for trying the sidecar.

The demo starts moto in server mode as a child process on a free loopback port,
seeds it with example secrets, and hands the sidecar a botocore session with
made-up credentials, so the whole path runs on a machine with no AWS account and
the user's own credentials are never sent anywhere. moto is an optional extra
(``cachecore-server[demo]``) and is never imported by a production start.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from cachecore import ConfigError

__all__ = [
    "DEMO_PARAMETERS",
    "DEMO_REGION",
    "DEMO_SECRETS",
    "DemoBackend",
    "banner",
    "demo_session",
    "free_port",
]

logger = logging.getLogger(__name__)

DEMO_REGION = "us-east-1"
_START_TIMEOUT = 30.0

#: What the demo seeds: name -> value (str for SecretString, bytes for SecretBinary).
#: These are example values for a local demo, not credentials of anything.
DEMO_SECRETS: dict[str, str | bytes] = {
    "demo/db": json.dumps(
        {
            "engine": "postgres",
            "host": "db.internal.example",
            "port": 5432,
            "username": "app",
            "password": "demo-password-not-a-secret",
        }
    ),
    "demo/api-key": "demo-api-key-0123456789",
    "demo/signing-key": bytes(range(16)),
}

#: SSM parameters the demo seeds: name -> (type, value).
DEMO_PARAMETERS: dict[str, tuple[str, str]] = {
    "/demo/feature-flags": ("StringList", "search,checkout"),
    "/demo/db-password": ("SecureString", "demo-parameter-not-a-secret"),
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def demo_session() -> Any:
    """A botocore session with made-up credentials and the demo region."""
    import botocore.session

    session = botocore.session.Session()
    session.set_credentials("demo-access-key", "demo-secret-key")
    session.set_config_variable("region", DEMO_REGION)
    return session


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to stop this child when the process that started it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


class DemoBackend:
    """moto in server mode, on loopback, seeded with ``DEMO_SECRETS``."""

    def __init__(self, process: subprocess.Popen[bytes], endpoint_url: str) -> None:
        self.process = process
        self.endpoint_url = endpoint_url
        self._owner = os.getpid()

    @classmethod
    def start(cls, host: str = "127.0.0.1") -> DemoBackend:
        """Start moto, wait until it answers, and seed the demo secrets."""
        if importlib.util.find_spec("moto") is None:
            raise ConfigError("--demo needs moto: pip install 'cachecore-server[demo]'")
        port = free_port(host)
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        backend = cls(process, f"http://{host}:{port}")
        try:
            backend._wait_until_ready(host, port)
            backend._seed()
        except BaseException:
            backend.stop()
            raise
        logger.info("demo Secrets Manager (moto) at %s", backend.endpoint_url)
        return backend

    def _wait_until_ready(self, host: str, port: int) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"the demo Secrets Manager (moto) exited at start with code "
                    f"{self.process.returncode}"
                )
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise ConfigError(
            f"the demo Secrets Manager (moto) did not listen within {_START_TIMEOUT:g}s"
        )

    def _seed(self) -> None:
        client = demo_session().create_client(
            "secretsmanager", endpoint_url=self.endpoint_url
        )
        for name, value in DEMO_SECRETS.items():
            if isinstance(value, bytes):
                client.create_secret(Name=name, SecretBinary=value)
            else:
                client.create_secret(Name=name, SecretString=value)
        client.close()
        ssm = demo_session().create_client("ssm", endpoint_url=self.endpoint_url)
        for name, (kind, text) in DEMO_PARAMETERS.items():
            ssm.put_parameter(Name=name, Type=kind, Value=text)
        ssm.close()

    def stop(self) -> None:
        """Stop moto and wait for it to exit (only from the process that started it).

        Under ``--server gunicorn`` (and granian) a worker is forked from this
        process; when the worker exits it must leave moto to the parent.
        """
        if os.getpid() != self._owner:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def banner(base_url: str, token_header: str, token: str | None, made: bool) -> str:
    """How to call the demo, as curl lines.

    ``token`` is what the curl lines put in the token header: the literal token
    when the demo ``made`` it, otherwise ``$VARIABLE`` naming where it came from,
    so a token the user set is never printed. ``None`` means auth is off.
    """
    auth = f' -H "{token_header}: {token}"' if token is not None else ""
    lines = [
        "",
        "cachecore demo: a sidecar in front of an embedded Secrets Manager (moto)",
        f"  sidecar:  {base_url}",
        f"  secrets:  {', '.join(DEMO_SECRETS)}",
        f"  parameters: {', '.join(DEMO_PARAMETERS)}",
    ]
    if made:
        lines.append(f"  token:    {token}  (made for this run)")
    lines += [
        "",
        "Try:",
        f"  curl -s{auth} '{base_url}/secretsmanager/get?secretId=demo/db'",
        f"  curl -s{auth} -X POST '{base_url}/cache?name=demo/db&refresh=0'",
        f"  curl -s{auth} '{base_url}/cache?name=demo/api-key'",
        f"  curl -s{auth} '{base_url}/v1/demo/api-key'",
        (
            f"  curl -s{auth} '{base_url}/systemsmanager/parameters/get"
            "?name=/demo/db-password&withDecryption=true'"
        ),
        f"  curl -s '{base_url}/ping'",
        "",
        "Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)
