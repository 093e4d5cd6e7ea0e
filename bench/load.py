"""Load generators: wrk where it is installed, else a Python one of several processes.

Both keep every connection alive, send the same GET with the token, run for a fixed
time, and give requests per second, p50 and p99 latency, and the count of
answers other than 200 (errors).
"""

from __future__ import annotations

import http.client
import multiprocessing
import re
import resource
import shutil
import subprocess
import threading
import time
from typing import Any

from common import HOST, TOKEN, TOKEN_HEADER

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk_path() -> str | None:
    """The wrk on PATH, if any."""
    return shutil.which("wrk")


def wrk_version() -> str:
    """The version line that wrk prints."""
    path = wrk_path()
    if path is None:
        return "not installed"
    out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    return (out.stdout + out.stderr).splitlines()[0].strip()


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not found:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def run_wrk(port: int, target: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk point: one thread (the server is the bottleneck on 2 cores).

    ``generator_cpu`` is the share of one core that wrk used, to show that it was
    not the bottleneck.
    """
    path = wrk_path()
    assert path is not None
    command = [
        path,
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "5s",
        "-H",
        f"{TOKEN_HEADER}: {TOKEN}",
        f"http://{HOST}:{port}{target}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Only wrk ends between the two: the servers are children that still run.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_200": int(bad.group(1)) if bad else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
        "generator_cpu": cpu / seconds,
    }


def _worker(
    port: int,
    target: str,
    connections: int,
    seconds: float,
    start_at: float,
    out: Any,
) -> None:
    latencies: list[float] = []
    errors = [0]

    def one_connection() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=5)
        headers = {TOKEN_HEADER: TOKEN}
        end = start_at + seconds
        while (now := time.perf_counter()) < end:
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors[0] += 1
            except OSError:
                errors[0] += 1
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=5)
                continue
            latencies.append(time.perf_counter() - now)
        connection.close()

    while time.perf_counter() < start_at:
        time.sleep(0.001)
    threads = [threading.Thread(target=one_connection) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send((latencies, errors[0]))


def run_python(
    port: int, target: str, connections: int, seconds: float, processes: int = 2
) -> dict[str, Any]:
    """The same point from ``processes`` processes, threads of keep-alive clients."""
    processes = min(processes, connections)
    shares = [connections // processes] * processes
    for i in range(connections % processes):
        shares[i] += 1
    start_at = time.perf_counter() + 0.5
    pipes = []
    workers = []
    for share in shares:
        receive, send = multiprocessing.Pipe(duplex=False)
        worker = multiprocessing.Process(
            target=_worker, args=(port, target, share, seconds, start_at, send)
        )
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    latencies: list[float] = []
    errors = 0
    for receive in pipes:
        got, bad = receive.recv()
        latencies.extend(got)
        errors += bad
    for worker in workers:
        worker.join(10)
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "non_200": errors,
        "socket_errors": "",
    }


def run_point(
    port: int, target: str, connections: int, seconds: float
) -> dict[str, Any]:
    """One point with wrk if present, else with the Python generator."""
    if wrk_path():
        return run_wrk(port, target, connections, seconds)
    return run_python(port, target, connections, seconds)
