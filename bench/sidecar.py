"""Sidecar hit throughput and latency per server, beside a constant-response floor.

For each server choice, the sidecar answers a warm key at 1, 4 and 16 connections,
then the constant-response app of ``floor_server`` runs on the same server with the
same threads at the same points. The ratio of the two is the sidecar's cost over
the server's own.
"""

from __future__ import annotations

import sys
from typing import Any

from common import HERE, create_secrets, free_port, get, run_server, sidecar
from load import run_point

CONNECTIONS = (1, 4, 16)
NAME = "bench/sidecar-hot"
TARGET = f"/secretsmanager/get?secretId={NAME}"
THREADS = 8
#: The floors of a server other than one WSGI app: (result key, extra arguments).
FLOORS = {"granian": (("floor", ["wsgi"]), ("floor_rsgi", ["rsgi"]))}


def servers() -> list[str]:
    """The server choices that can run here."""
    from cachecore_server._serve import SERVERS

    found = []
    for server in SERVERS:
        if server == "granian":
            from cachecore_server._granian import available

            if not available():
                continue
        found.append(server)
    return found


def _points(port: int, target: str, seconds: float) -> dict[str, Any]:
    run_point(port, target, 4, 1.0)  # warm-up
    return {str(c): run_point(port, target, c, seconds) for c in CONNECTIONS}


def run(moto_url: str, seconds: float) -> dict[str, Any]:
    """``{server: {"sidecar": {conns: point}, "floor": {conns: point}, ...}}``.

    granian has a second floor, ``floor_rsgi``.
    """
    create_secrets(moto_url, [NAME], "s" * 150)
    results: dict[str, Any] = {}
    for server in servers():
        print(f"  sidecar under {server}", flush=True)
        with sidecar(moto_url, server=server, threads=THREADS) as running:
            status, _ = get(running.port, TARGET)
            assert status == 200, status
            sidecar_points = _points(running.port, TARGET, seconds)
        results[server] = {"sidecar": sidecar_points}
        # granian's floors are those of its WSGI interface and of its RSGI one.
        for key, extra in FLOORS.get(server, (("floor", []),)):
            port = free_port()
            command = [
                sys.executable,
                str(HERE / "floor_server.py"),
                server,
                str(port),
                str(THREADS),
                *extra,
            ]
            with run_server(command, {}, port) as floor:
                results[server][key] = _points(floor.port, TARGET, seconds)
    return results
