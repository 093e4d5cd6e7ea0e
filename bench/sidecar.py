"""Sidecar hit throughput and latency per server, beside a constant-response floor.

For each server choice, the sidecar and the constant-response app of
``floor_server`` (on the same server, with the same threads) run side by side,
and each point (1, 4 and 16 connections) is measured ``ROUNDS`` times, taking the
apps in turn within a round; a point's figures are the medians of its rounds.
Taking turns spreads the machine's slow moments over every app alike, so the
ratio of the two, the sidecar's cost over the server's own, is not one app's
bad luck.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from typing import Any

from common import HERE, create_secrets, free_port, get, run_server, sidecar
from load import run_point

CONNECTIONS = (1, 4, 16)
NAME = "bench/sidecar-hot"
TARGET = f"/secretsmanager/get?secretId={NAME}"
THREADS = 8
#: How many times each point is measured, the apps taking turns.
ROUNDS = 3
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


def _median_point(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One point from its rounds: the median of each figure; errors added up."""
    return {
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "non_200": sum(r["non_200"] for r in rounds),
        "socket_errors": "; ".join(
            r["socket_errors"] for r in rounds if r["socket_errors"]
        ),
        "rps_rounds": [round(r["rps"]) for r in rounds],
        # Measured for wrk only; the Python generator's own processes are not.
        "generator_cpu": (
            max(r["generator_cpu"] for r in rounds)
            if all("generator_cpu" in r for r in rounds)
            else None
        ),
    }


def run(moto_url: str, seconds: float, rounds: int = ROUNDS) -> dict[str, Any]:
    """``{server: {"sidecar": {conns: point}, "floor": {conns: point}, ...}}``.

    granian has a second floor, ``floor_rsgi``.
    """
    create_secrets(moto_url, [NAME], "s" * 150)
    results: dict[str, Any] = {}
    for server in servers():
        print(f"  sidecar under {server}, beside its floors", flush=True)
        with contextlib.ExitStack() as stack:
            running = stack.enter_context(
                sidecar(moto_url, server=server, threads=THREADS)
            )
            status, _ = get(running.port, TARGET)
            assert status == 200, status
            ports = {"sidecar": running.port}
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
                ports[key] = stack.enter_context(run_server(command, {}, port)).port
            for port in ports.values():
                run_point(port, TARGET, 4, 1.0)  # warm-up
            taken: dict[str, dict[str, list[dict[str, Any]]]] = {
                app: {str(c): [] for c in CONNECTIONS} for app in ports
            }
            for conns in CONNECTIONS:
                for _ in range(rounds):
                    for app, port in ports.items():
                        point = run_point(port, TARGET, conns, seconds)
                        taken[app][str(conns)].append(point)
        results[server] = {
            app: {conns: _median_point(points) for conns, points in by_conns.items()}
            for app, by_conns in taken.items()
        }
    return results
