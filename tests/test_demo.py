"""`cachecore-server --demo`, the README's first command, as a new user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from support import (
    TOKEN,
    free_port,
    request,
    server_command,
    sidecar_env,
    stop,
    wait_for_port,
)

from cachecore_server import TOKEN_HEADER


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_demo(tmp_path, env, *options):
    port = free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [*server_command(), "--demo", "--port", str(port), *options],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "Stop with Ctrl-C." not in out.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail("the demo did not start:\n" + out.read_text())
        time.sleep(0.05)
    wait_for_port(port, process, "cachecore-server --demo", out)
    return process, port, out


def without_aws_settings():
    env = sidecar_env("http://unused")
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    env["HOME"] = os.environ.get("HOME", "/tmp")
    return env


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
# As a new user runs it (no --server), and under gunicorn, which forks its worker
# from the process that started moto: only that process may stop moto.
@pytest.mark.parametrize(
    "options", [(), ("--server", "gunicorn")], ids=["no --server", "gunicorn"]
)
def test_demo_serves_the_password_on_both_routes_and_stops_moto(tmp_path, options):
    process, port, out = start_demo(tmp_path, without_aws_settings(), *options)
    try:
        banner = out.read_text()
        token = re.search(r"token:\s+(\S+)", banner).group(1)
        auth = {TOKEN_HEADER: token}
        moto_children = children_of(process.pid)

        aws = request(port, "GET", "/secretsmanager/get?secretId=demo/db", headers=auth)
        legacy = request(port, "POST", "/cache?name=demo/db&refresh=0", headers=auth)
        binary = request(port, "GET", "/cache?name=demo/signing-key", headers=auth)
        refused = request(port, "GET", "/cache?name=demo/db")
    finally:
        code = stop(process)

    assert f'curl -s -H "{TOKEN_HEADER}: {token}"' in banner
    assert aws.status == 200
    password = json.loads(json.loads(aws.body)["SecretString"])["password"]
    assert password == "demo-password-not-a-secret"
    assert json.loads(legacy.body)["password"] == password
    assert binary.body == bytes(range(16))
    assert refused.status == 401
    assert code == 0
    assert moto_children and not any(alive(pid) for pid in moto_children)


def test_demo_uses_the_token_from_the_environment_and_never_prints_it(tmp_path):
    env = without_aws_settings()
    env["CACHECORE_TOKEN"] = TOKEN
    process, port, out = start_demo(tmp_path, env)
    try:
        ok = request(
            port,
            "GET",
            "/secretsmanager/get?secretId=demo/api-key",
            headers={TOKEN_HEADER: TOKEN},
        )
    finally:
        stop(process)

    assert ok.status == 200
    assert json.loads(ok.body)["SecretString"] == "demo-api-key-0123456789"
    printed = out.read_text()
    assert TOKEN not in printed
    assert f"{TOKEN_HEADER}: $CACHECORE_TOKEN" in printed
