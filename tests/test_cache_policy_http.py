"""The cache policy seen over HTTP, with a fault proxy between the sidecar and moto
that counts GetSecretValue calls and answers throttling, 500s or access denied.

The sidecar runs with AWS_MAX_ATTEMPTS=1, so each fetch is one call at the proxy.
Every load here is bounded in count and time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import TOKEN, env_through

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}
GET = "GetSecretValue"


#: Every sidecar here: each fetch is one call at the proxy.
ONE_CALL = {"AWS_MAX_ATTEMPTS": "1"}


def poll_answers(sidecar, target, until, timeout=20.0, **kwargs):
    """Request ``target`` until ``until(answer)``; every answer is returned."""
    answers = [sidecar.get(target, headers=AUTH, **kwargs)]
    deadline = time.monotonic() + timeout
    while not until(answers[-1]):
        assert time.monotonic() < deadline, f"no answer matched within {timeout}s"
        time.sleep(0.05)
        answers.append(sidecar.get(target, headers=AUTH, **kwargs))
    return answers


def test_fifty_concurrent_cold_requests_make_one_upstream_call(
    secretsmanager, unique, start_sidecar, proxy
):
    name = unique("cold")
    secretsmanager.create_secret(Name=name, SecretString="cold-value")
    sidecar = start_sidecar("--threads", "64", env=env_through(proxy, **ONE_CALL))
    proxy.delay(GET, 0.5)  # the first fetch is still under way when the rest arrive
    start = threading.Barrier(50)

    def one(_):
        start.wait(timeout=10)
        return sidecar.get(f"/secretsmanager/get?secretId={name}", headers=AUTH)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))

    assert [a.status for a in answers] == [200] * 50
    assert {a.secret_string for a in answers} == {"cold-value"}
    assert proxy.calls(GET) == 1


def test_forced_refresh_storm_is_capped_per_interval(
    secretsmanager, unique, start_sidecar, proxy
):
    name = unique("storm")
    secretsmanager.create_secret(Name=name, SecretString="v")
    interval = 1.0
    sidecar = start_sidecar(
        env=env_through(proxy, **ONE_CALL, CACHECORE_REFRESH_MIN_INTERVAL=str(interval))
    )
    stop_at = time.monotonic() + 3.0
    sent = []

    def storm():
        count = 0
        while time.monotonic() < stop_at and count < 500:
            sent.append(sidecar.get(f"/cache?name={name}&refresh=1", headers=AUTH))
            count += 1

    started = time.monotonic()
    threads = [threading.Thread(target=storm) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started

    assert all(a.status == 200 and a.text == "v" for a in sent)
    assert len(sent) > 50
    # One call per interval of the storm, plus one for the interval it ends in.
    assert proxy.calls(GET) <= math.floor(elapsed / interval) + 1


@pytest.mark.parametrize(("kind", "label"), [("error500", "500"), ("throttle", "429")])
def test_expired_value_is_served_stale_while_upstream_fails(
    secretsmanager, unique, start_sidecar, proxy, kind, label
):
    name = unique(f"stale-{label}")
    secretsmanager.create_secret(Name=name, SecretString=json.dumps({"k": label}))
    sidecar = start_sidecar(
        env=env_through(proxy, **ONE_CALL, CACHECORE_TTL="1", CACHECORE_MAX_STALE="600")
    )
    target = f"/secretsmanager/get?secretId={name}"
    assert sidecar.get(target, headers=AUTH).status == 200

    proxy.fail(GET, kind)
    answers = poll_answers(sidecar, target, lambda a: a.headers["x-cache"] == "STALE")
    proxy.clear()

    for answer in answers:
        assert answer.status == 200
        assert json.loads(answer.secret_string) == {"k": label}
    assert answers[-1].headers["cache-control"] == "no-store"


def test_access_denied_after_expiry_is_403_and_never_served_stale(
    secretsmanager, unique, start_sidecar, proxy
):
    name = unique("revoked")
    secretsmanager.create_secret(Name=name, SecretString="revoked-value")
    sidecar = start_sidecar(
        env=env_through(proxy, **ONE_CALL, CACHECORE_TTL="1", CACHECORE_MAX_STALE="600")
    )
    target = f"/cache?name={name}"
    assert sidecar.get(target, headers=AUTH).text == "revoked-value"

    proxy.fail(GET, "deny")
    answers = poll_answers(sidecar, target, lambda a: a.status != 200)
    denied = answers[-1]
    # The revocation also outlives a later transient failure: no stale value comes
    # back once access has been denied.
    proxy.fail(GET, "error500")
    later = poll_answers(sidecar, target, lambda a: a.status == 502)
    proxy.clear()

    assert all(a.headers["x-cache"] == "HIT" for a in answers[:-1])
    assert denied.status == 403
    assert denied.text.startswith("Secrets Manager answered AccessDeniedException")
    assert all(b"revoked-value" not in a.body for a in answers[-1:] + later)


def test_throttled_cold_key_answers_429_with_retry_after_and_backs_off(
    secretsmanager, unique, start_sidecar, proxy
):
    name = unique("throttled")
    secretsmanager.create_secret(Name=name, SecretString="x")
    sidecar = start_sidecar(
        env=env_through(proxy, **ONE_CALL, CACHECORE_BACKOFF_BASE_SECONDS="30")
    )
    proxy.fail(GET, "throttle")

    answers = [
        sidecar.get(f"/secretsmanager/get?secretId={name}", headers=AUTH)
        for _ in range(20)
    ]

    assert [a.status for a in answers] == [429] * 20
    assert all("retry-after" in a.headers for a in answers)
    assert json.loads(answers[0].body)["__type"] == "ThrottlingException"
    assert proxy.calls(GET) == 1  # the other 19 were answered from the backoff


def test_prefetch_uses_batch_calls_against_moto(secretsmanager, unique, proxy):
    import botocore.session

    from cachecore import (
        Config,
        SecretCache,
        SecretNotFoundError,
        SecretsManagerFetcher,
    )

    names = [unique(f"batch-{i}") for i in range(25)]
    for name in names:
        secretsmanager.create_secret(Name=name, SecretString=f"value of {name}")
    missing = unique("batch-missing")
    session = botocore.session.Session()
    session.set_credentials("test-key", "test-secret")
    fetcher = SecretsManagerFetcher(
        session=session, region="us-east-1", endpoint_url=proxy.url, max_attempts=1
    )
    cache = SecretCache(fetcher, Config())

    failed = cache.prefetch([*names, missing])
    proxy.reset_counts()
    values = [cache.get(name).secret_string for name in names]

    assert set(failed) == {missing}
    assert isinstance(failed[missing], SecretNotFoundError)
    assert values == [f"value of {name}" for name in names]
    assert proxy.calls(GET) == 0  # every value came from the two batches
    cache.close()


def test_prefetch_makes_two_batch_calls_for_twenty_five_ids(
    secretsmanager, unique, proxy
):
    import botocore.session

    from cachecore import Config, SecretCache, SecretsManagerFetcher

    names = [unique(f"count-{i}") for i in range(25)]
    for name in names:
        secretsmanager.create_secret(Name=name, SecretString="v")
    session = botocore.session.Session()
    session.set_credentials("test-key", "test-secret")
    fetcher = SecretsManagerFetcher(
        session=session, region="us-east-1", endpoint_url=proxy.url, max_attempts=1
    )
    cache = SecretCache(fetcher, Config())
    proxy.reset_counts()

    assert cache.prefetch(names) == {}

    assert proxy.calls("BatchGetSecretValue") == 2
    assert proxy.calls(GET) == 0
    cache.close()
