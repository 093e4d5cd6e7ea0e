"""The whole stack on its worst day: the fault proxy between the sidecar and moto
throttles, fails, slows, black-holes or resets GetSecretValue, and the sidecar
keeps answering within its bounds. Both servers; every load is bounded."""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import GRANIAN, TOKEN, env_through

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}
GET = "GetSecretValue"
SERVERS = ["gunicorn", "waitress", GRANIAN]


#: Every sidecar here: entries expire exactly at their TTL.
NO_JITTER = {"CACHECORE_TTL_JITTER": "0"}


def secret_target(name: str) -> str:
    return f"/secretsmanager/get?secretId={name}"


@pytest.mark.parametrize("server", SERVERS)
def test_a_throttling_storm_is_answered_stale_with_calls_bounded_by_the_backoff(
    secretsmanager, unique, start_sidecar, proxy, server
):
    name = unique("storm")
    secretsmanager.create_secret(Name=name, SecretString="before-the-storm")
    sidecar = start_sidecar(
        server=server,
        env=env_through(
            proxy,
            **NO_JITTER,
            CACHECORE_TTL="1",
            AWS_MAX_ATTEMPTS="1",
            CACHECORE_BACKOFF_BASE_SECONDS="1",
            CACHECORE_BACKOFF_GROWTH="2",
        ),
    )
    assert sidecar.get(secret_target(name), headers=AUTH).status == 200
    time.sleep(1.1)  # the 1 s TTL runs out: only the clock can do that
    proxy.fail(GET, "throttle")
    proxy.reset_counts()

    window = 3.5
    answers = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        while time.monotonic() - started < window:
            batch = [pool.submit(sidecar.get, secret_target(name), headers=AUTH)]
            batch += [
                pool.submit(sidecar.get, secret_target(name), headers=AUTH)
                for _ in range(7)
            ]
            answers += [f.result() for f in batch]
            time.sleep(0.05)

    assert len(answers) >= 100
    assert {a.status for a in answers} == {200}
    assert {a.headers["x-cache"] for a in answers} == {"STALE"}
    assert {a.secret_string for a in answers} == {"before-the-storm"}
    # Failures at 0, 1 and 3 s after the first: backoff 1 s, then 2 s, then 4 s.
    bound = 1 + math.floor(math.log2(window + 1))
    assert 2 <= proxy.calls(GET) <= bound


@pytest.mark.parametrize("server", SERVERS)
def test_500s_are_answered_stale_when_cached_and_502_when_not(
    secretsmanager, unique, start_sidecar, proxy, server
):
    cached, cold = unique("500-cached"), unique("500-cold")
    secretsmanager.create_secret(Name=cached, SecretString="kept")
    secretsmanager.create_secret(Name=cold, SecretString="never-read")
    sidecar = start_sidecar(
        server=server, env=env_through(proxy, **NO_JITTER, CACHECORE_TTL="1")
    )
    assert sidecar.get(secret_target(cached), headers=AUTH).status == 200
    time.sleep(1.1)  # the 1 s TTL runs out: only the clock can do that
    proxy.fail(GET, "error500")

    stale = sidecar.get(secret_target(cached), headers=AUTH)
    failed = sidecar.get(secret_target(cold), headers=AUTH)

    assert (stale.status, stale.headers["x-cache"]) == (200, "STALE")
    assert stale.secret_string == "kept"
    assert failed.status == 502
    assert json.loads(failed.body)["__type"] == "InternalServiceError"
    assert "never-read" not in failed.text


@pytest.mark.parametrize("server", SERVERS)
def test_latency_beyond_the_timeout_is_504_within_the_timeout(
    secretsmanager, unique, start_sidecar, proxy, server
):
    slow, cached = unique("slow"), unique("slow-cached")
    secretsmanager.create_secret(Name=slow, SecretString="too-late")
    secretsmanager.create_secret(Name=cached, SecretString="kept")
    sidecar = start_sidecar(
        server=server,
        env=env_through(
            proxy, **NO_JITTER, CACHECORE_UPSTREAM_TIMEOUT="1", CACHECORE_TTL="1"
        ),
    )
    assert sidecar.get(secret_target(cached), headers=AUTH).status == 200
    time.sleep(1.1)  # the 1 s TTL runs out: only the clock can do that
    proxy.delay(GET, 4.0)

    began = time.monotonic()
    late = sidecar.get(secret_target(slow), headers=AUTH)
    took = time.monotonic() - began
    stale = sidecar.get(secret_target(cached), headers=AUTH)

    assert late.status == 504
    assert json.loads(late.body)["__type"] == "RequestTimeout"
    assert took < 1 + 1.0, f"the 504 took {took:.2f}s with a 1 s timeout"
    assert (stale.status, stale.headers["x-cache"]) == (200, "STALE")
    assert stale.secret_string == "kept"


@pytest.mark.parametrize("server", SERVERS)
def test_a_black_hole_is_504_within_the_bound_and_ping_and_other_keys_answer(
    secretsmanager, unique, start_sidecar, proxy, server
):
    holed, warm = unique("holed"), unique("warm")
    secretsmanager.create_secret(Name=holed, SecretString="unreachable")
    secretsmanager.create_secret(Name=warm, SecretString="warm-value")
    timeout = 2.0
    sidecar = start_sidecar(
        server=server,
        env=env_through(proxy, **NO_JITTER, CACHECORE_UPSTREAM_TIMEOUT=str(timeout)),
    )
    assert sidecar.get(secret_target(warm), headers=AUTH).status == 200
    proxy.black_hole(GET)

    answers: list = []

    def hole() -> None:
        began = time.monotonic()
        answer = sidecar.get(secret_target(holed), headers=AUTH, timeout=30)
        answers.append((answer, time.monotonic() - began))

    holders = [threading.Thread(target=hole) for _ in range(3)]
    for holder in holders:
        holder.start()
    proxy.wait_calls(GET, 2)  # the warm read, then the black-holed call
    during = [sidecar.get("/ping") for _ in range(5)]
    warm_answer = sidecar.get(secret_target(warm), headers=AUTH)
    for holder in holders:
        holder.join(30)
    proxy.clear(GET)

    assert [a.status for a in during] == [200] * 5
    assert (warm_answer.status, warm_answer.headers["x-cache"]) == (200, "HIT")
    assert warm_answer.secret_string == "warm-value"
    assert [a.status for a, _ in answers] == [504] * 3
    assert [json.loads(a.body)["__type"] for a, _ in answers] == ["RequestTimeout"] * 3
    assert max(took for _, took in answers) < timeout + 1.0


@pytest.mark.parametrize("server", SERVERS)
def test_a_reset_connection_costs_one_retry_then_succeeds(
    secretsmanager, unique, start_sidecar, proxy, server
):
    name = unique("reset")
    secretsmanager.create_secret(Name=name, SecretString="after-a-reset")
    sidecar = start_sidecar(server=server, env=env_through(proxy, **NO_JITTER))
    proxy.reset(GET, times=1)

    answer = sidecar.get(secret_target(name), headers=AUTH)

    assert (answer.status, answer.secret_string) == (200, "after-a-reset")
    assert proxy.calls(GET) == 2
