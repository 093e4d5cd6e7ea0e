"""RSS of the sidecar and of the Lambda extension, idle and with 1000 secrets cached.

Each secret is 4 KiB of text; 1000 of them are 4000 KiB of raw values. The sidecar
is measured under each server as the RSS of its process tree (gunicorn and granian
fork one worker from a main process), and of its largest process; the extension
is one process.

"Idle" is after one secret outside the 1000 has been read twice: what a first
fetch costs once (botocore's loaders, the worker's copy-on-write pages of what it
inherited) is a cost of starting, not of caching.
"""

from __future__ import annotations

import http.client
import sys
import time
from typing import Any

from common import (
    HOST,
    children,
    create_secrets,
    get,
    rss_kib,
    sidecar,
    tree_rss_kib,
)

COUNT = 1000
SIZE = 4096
NAMES = [f"bench/mem-{i:04d}" for i in range(COUNT)]
WARM = "bench/mem-warm-up"


def _fill(port: int) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    for name in NAMES:
        status, body = get(port, f"/secretsmanager/get?secretId={name}", connection)
        assert status == 200, status
    connection.close()


def _largest(pid: int) -> int:
    return max([rss_kib(pid)] + [rss_kib(c) for c in children(pid)])


def run(moto_url: str, servers: list[str]) -> dict[str, Any]:
    """``{"sidecar": {server: {...}}, "extension": {...}}`` in KiB."""
    create_secrets(moto_url, [*NAMES, WARM], "m" * SIZE)
    results: dict[str, Any] = {"raw_kib": COUNT * SIZE / 1024, "sidecar": {}}
    for server in servers:
        with sidecar(moto_url, server=server) as running:
            for _ in range(2):
                status, _ = get(running.port, f"/secretsmanager/get?secretId={WARM}")
                assert status == 200, status
            time.sleep(0.5)
            idle = (tree_rss_kib(running.pid), _largest(running.pid))
            processes = 1 + len(children(running.pid))
            _fill(running.port)
            time.sleep(0.5)
            full = (tree_rss_kib(running.pid), _largest(running.pid))
        results["sidecar"][server] = {
            "idle_tree_kib": idle[0],
            "full_tree_kib": full[0],
            "idle_largest_kib": idle[1],
            "full_largest_kib": full[1],
            "processes": processes,
        }
    results["extension"] = _extension(moto_url)
    return results


def _extension(moto_url: str) -> dict[str, Any]:
    import extension_start

    env = extension_start.sidecar_env(moto_url, AWS_SESSION_TOKEN=extension_start.TOKEN)
    idle, full = extension_start.memory(
        [sys.executable, "-m", "cachecore_lambda"], env, NAMES, WARM
    )
    return {"idle_kib": idle, "full_kib": full}
