"""Start time and memory of the Lambda extension, against the test emulator and moto.

    python bench/extension_start.py [--runs 10] [--launcher PATH]

Prints, over ``--runs`` starts: process start to the first HTTP answer on the port,
to the register request, and to the first 200; and the extension's RSS idle and
after 100 secrets of 4 KiB were read once each. Beside them, the time of a bare
``python -c "import boto3"``. Loopback only; every process it starts, it stops.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import rss_kib, secretsmanager  # noqa: E402
from lambda_emulator import ExtensionsAPI  # noqa: E402
from support import HOST, free_port, moto_server, sidecar_env  # noqa: E402

TOKEN = "bench-session-token"


def get(port: int, target: str) -> int:
    """Status of one GET with the token."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request(
            "GET", target, headers={"X-Aws-Parameters-Secrets-Token": TOKEN}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def one_start(command: list[str], env: dict[str, str], secret: str) -> dict[str, float]:
    """Seconds from process start to first answer, to register, to the first 200."""
    port = free_port()
    with ExtensionsAPI() as api:
        run_env = dict(
            env, AWS_LAMBDA_RUNTIME_API=api.address, CACHECORE_PORT=str(port)
        )
        started = time.monotonic()
        process = subprocess.Popen(
            command, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            answered: float | None = None
            ready: float | None = None
            deadline = started + 30
            while time.monotonic() < deadline:
                try:
                    status = get(port, f"/secretsmanager/get?secretId={secret}")
                except OSError:
                    time.sleep(0.001)
                    continue
                now = time.monotonic()
                answered = answered or now
                if status == 200:
                    ready = now
                    break
            registration = api.wait_registered(30)
            api.wait_waiting(30)
            if answered is None or ready is None:
                raise RuntimeError("the extension never answered 200 within 30 s")
            return {
                "answer": answered - started,
                "register": registration.arrived - started,
                "ready": ready - started,
            }
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def memory(
    command: list[str], env: dict[str, str], names: list[str], warm: str | None = None
) -> tuple[int, int]:
    """RSS in KiB when idle after init, and after reading each of ``names`` once.

    With ``warm``, idle is after that secret (not one of ``names``) was read twice.
    """
    port = free_port()
    with ExtensionsAPI() as api:
        run_env = dict(
            env, AWS_LAMBDA_RUNTIME_API=api.address, CACHECORE_PORT=str(port)
        )
        process = subprocess.Popen(
            command, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            api.wait_registered(30)
            api.wait_waiting(30)
            get(port, "/ping")
            for _ in range(2 if warm else 0):
                assert get(port, f"/secretsmanager/get?secretId={warm}") == 200
            time.sleep(0.5)
            idle = rss_kib(process.pid)
            for name in names:
                assert get(port, f"/secretsmanager/get?secretId={name}") == 200
            time.sleep(0.5)
            return idle, rss_kib(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def main() -> int:
    """Measure and print; see the module docstring."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--launcher", help="the layer's extensions/cachecore")
    parser.add_argument("--python", help="the Python the launcher runs")
    args = parser.parse_args()

    with moto_server() as url:
        client = secretsmanager(url)
        names = [f"bench/secret-{i:03d}" for i in range(100)]
        for name in names:
            client.create_secret(Name=name, SecretString="x" * 4096)
        env = sidecar_env(url, AWS_SESSION_TOKEN=TOKEN)
        if args.python:
            env["CACHECORE_PYTHON"] = args.python
        command = (
            [args.launcher]
            if args.launcher
            else [sys.executable, "-m", "cachecore_lambda"]
        )
        runs = [one_start(command, env, names[0]) for _ in range(args.runs)]
        boto = []
        for _ in range(args.runs):
            started = time.monotonic()
            subprocess.run([sys.executable, "-c", "import boto3"], check=True)
            boto.append(time.monotonic() - started)
        idle, full = memory(command, env, names)

    def median_ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    print(f"command: {' '.join(command)}; {args.runs} starts, medians")
    print(
        f"start -> first answer on the port: {median_ms([r['answer'] for r in runs])}"
    )
    print(
        f"start -> register request:        {median_ms([r['register'] for r in runs])}"
    )
    print(f"start -> first 200 (cache ready):  {median_ms([r['ready'] for r in runs])}")
    print(f"python -c 'import boto3':          {median_ms(boto)}")
    print(
        f"RSS idle: {idle / 1024:.1f} MiB; "
        f"after 100 secrets of 4 KiB: {full / 1024:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
