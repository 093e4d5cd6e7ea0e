"""SIGTERM to a running sidecar, under each server: requests under way finish,
new connections are refused, and the process exits 0 within its shutdown timeout."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from support import TOKEN, Answer, env_through, request

from cachecore_server import TOKEN_HEADER

SERVERS = ["gunicorn", "waitress"]


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_lets_requests_under_way_finish_then_exits_0(
    start_sidecar, proxy, secretsmanager, unique, server
):
    names = [unique(f"stop-{i}") for i in range(5)]
    for name in names:
        secretsmanager.create_secret(Name=name, SecretString=f"value-of-{name}")
    sidecar = start_sidecar(
        server=server, env=env_through(proxy, CACHECORE_SHUTDOWN_TIMEOUT="5")
    )
    proxy.delay("GetSecretValue", 1.0)
    answers: dict[str, Answer] = {}

    def read(name: str) -> None:
        answers[name] = sidecar.get(
            f"/secretsmanager/get?secretId={name}", headers={TOKEN_HEADER: TOKEN}
        )

    readers = [threading.Thread(target=read, args=(n,)) for n in names]
    for reader in readers:
        reader.start()
    proxy.wait_calls("GetSecretValue", 5, timeout=10)
    assert proxy.calls("GetSecretValue") == 5

    sidecar.process.send_signal(signal.SIGTERM)
    code = sidecar.process.wait(timeout=10)
    for reader in readers:
        reader.join(10)

    assert code == 0
    assert {n: a.status for n, a in answers.items()} == dict.fromkeys(names, 200)
    assert [answers[n].secret_string for n in names] == [f"value-of-{n}" for n in names]


@pytest.mark.parametrize("server", SERVERS)
def test_after_sigterm_new_connections_are_refused_not_left_hanging(
    start_sidecar, proxy, secretsmanager, unique, server
):
    name = unique("stop-refuse")
    secretsmanager.create_secret(Name=name, SecretString="v")
    sidecar = start_sidecar(server=server, env=env_through(proxy))
    proxy.delay("GetSecretValue", 2.0)
    reader = threading.Thread(
        target=lambda: sidecar.get(
            f"/secretsmanager/get?secretId={name}", headers={TOKEN_HEADER: TOKEN}
        )
    )
    reader.start()
    proxy.wait_calls("GetSecretValue", 1)

    sidecar.process.send_signal(signal.SIGTERM)
    # While the slow request is still under way, a new connection is refused, or,
    # for a moment after the signal, answered: never accepted and left hanging.
    seen_refused = False
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and not seen_refused:
        try:
            answer = request(sidecar.port, "GET", "/ping", timeout=5)
        except ConnectionRefusedError:
            seen_refused = True
        else:
            assert answer.status == 200
            time.sleep(0.05)
    reader.join(10)

    assert seen_refused
    assert sidecar.process.wait(timeout=10) == 0


@pytest.mark.parametrize("server", SERVERS)
def test_a_request_stuck_upstream_does_not_hold_the_stop_past_its_timeout(
    start_sidecar, proxy, secretsmanager, unique, server
):
    name = unique("stop-stuck")
    secretsmanager.create_secret(Name=name, SecretString="v")
    sidecar = start_sidecar(
        server=server,
        env=env_through(
            proxy, CACHECORE_SHUTDOWN_TIMEOUT="2", CACHECORE_UPSTREAM_TIMEOUT="30"
        ),
    )
    proxy.black_hole("GetSecretValue")
    reader = threading.Thread(
        target=lambda: _quietly(sidecar.get, f"/secretsmanager/get?secretId={name}"),
        daemon=True,
    )
    reader.start()
    proxy.wait_calls("GetSecretValue", 1)

    sent = time.monotonic()
    sidecar.process.send_signal(signal.SIGTERM)
    code = sidecar.process.wait(timeout=15)
    took = time.monotonic() - sent

    assert code == 0
    assert took < 2 + 1.5, f"stopped {took:.1f}s after SIGTERM, timeout 2 s"


def _quietly(get, target):
    try:
        get(target, headers={TOKEN_HEADER: TOKEN}, timeout=30)
    except OSError:
        pass
