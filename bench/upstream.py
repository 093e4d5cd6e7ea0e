"""Calls to Secrets Manager that the sidecar makes, read from its ``/metrics``.

Three loads, against the default server (``DEFAULT_SERVER`` of
``cachecore_server._serve``, what ``cachecore-server`` runs without ``--server``):
100 concurrent cold requests for one key;
one client forcing a refresh on every request for a few seconds; 10,000 keys each
read twice (``CACHECORE_MAX_ENTRIES=10000``, so that all fit).

These run against a moto of their own: moto finds a secret by a scan of all it
holds, so its 10,000 secrets would slow every later benchmark. That scan is also
why this step takes minutes: each of moto's calls costs time linear in its secrets.
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    DEFAULT_SERVER,
    HOST,
    create_secrets,
    get,
    moto_server,
    sidecar,
    upstream_calls,
)

COLD = 100
KEYS = 10_000
STORM_SECONDS = 5.0
REFRESH_MIN_INTERVAL = 1.0


def _cold(port: int, name: str) -> dict[str, Any]:
    barrier = threading.Barrier(COLD)
    statuses: list[int] = []

    def one() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.connect()
        barrier.wait()
        statuses.append(
            get(port, f"/secretsmanager/get?secretId={name}", connection)[0]
        )
        connection.close()

    before = upstream_calls(port)
    threads = [threading.Thread(target=one) for _ in range(COLD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "requests": COLD,
        "ok": statuses.count(200),
        "calls": upstream_calls(port) - before,
    }


def _storm(port: int, name: str) -> dict[str, Any]:
    get(port, f"/secretsmanager/get?secretId={name}")
    time.sleep(REFRESH_MIN_INTERVAL)  # the first forced refresh may reach AWS
    before = upstream_calls(port)
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    requests = 0
    ok = 0
    end = time.monotonic() + STORM_SECONDS
    while time.monotonic() < end:
        status, _ = get(
            port, f"/secretsmanager/get?secretId={name}&refreshNow=true", connection
        )
        requests += 1
        ok += status == 200
    connection.close()
    return {
        "seconds": STORM_SECONDS,
        "requests": requests,
        "ok": ok,
        "calls": upstream_calls(port) - before,
        "allowed": math.ceil(STORM_SECONDS / REFRESH_MIN_INTERVAL),
    }


def _many(port: int, names: list[str]) -> dict[str, Any]:
    local = threading.local()

    def read(name: str) -> int:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(HOST, port, timeout=30)
        return get(port, f"/secretsmanager/get?secretId={name}", local.connection)[0]

    before = upstream_calls(port)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(read, names + names))
    return {
        "keys": len(names),
        "reads": len(statuses),
        "ok": statuses.count(200),
        "calls": upstream_calls(port) - before,
        "seconds": time.monotonic() - started,
    }


def run() -> dict[str, Any]:
    """The three counts, and the server they were taken under."""
    with moto_server() as moto_url:
        return _run(moto_url)


def _run(moto_url: str) -> dict[str, Any]:
    names = [f"bench/many-{i:05d}" for i in range(KEYS)]
    create_secrets(moto_url, ["bench/cold", "bench/storm", *names], "v" * 64)
    results: dict[str, Any] = {"server": DEFAULT_SERVER}
    with sidecar(
        moto_url,
        server=DEFAULT_SERVER,
        CACHECORE_MAX_ENTRIES=str(KEYS),
        CACHECORE_REFRESH_MIN_INTERVAL=f"{REFRESH_MIN_INTERVAL:g}",
        CACHECORE_MAX_CONNECTIONS="256",
    ) as running:
        results["cold"] = _cold(running.port, "bench/cold")
        results["storm"] = _storm(running.port, "bench/storm")
        results["many"] = _many(running.port, names)
    return results
