"""A bounded soak of the sidecar: steady load over 100 secrets while the fault
proxy injects faults and the secrets rotate in moto, about 45 s per server.

Run by ``nox -s soak``, and by ``nox -s tests`` (so ``./dev test``) after the
other tests; a plain ``pytest`` does not collect it: its file name is not
``test_*``. Everything is on loopback, bounded in time, and
stopped by its own pid. Checks:

- every 200 is a value that secret held at some time;
- every other status is 429, 502 or 504, and only while a fault was injected (or
  within the upstream timeout and backoff after one);
- the server's RSS grows by at most ``RSS_GROWTH_MIB`` from the warm-up to the end,
  and its threads and open files do not grow.

The figures are printed, and written to ``$CACHECORE_SOAK_REPORT`` when it is set.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from support import HOST, TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

SECRETS = 100
CLIENTS = 8
DURATION = float(os.environ.get("CACHECORE_SOAK_SECONDS", "45"))
WARM_UP = 10.0
QUIET_END = 4.0  # no faults at the end, so that threads settle before counting
TIMEOUT = 1.0  # CACHECORE_UPSTREAM_TIMEOUT
BACKOFF_MAX = 2.0
#: How long after a fault window its effects may still be seen.
AFTERMATH = TIMEOUT + BACKOFF_MAX + 1.0
RSS_GROWTH_MIB = 16
THREAD_GROWTH = 2
FD_GROWTH = 4
SETTLE_SECONDS = 5.0  # for the threads and open files to return after the load
SERVERS = ["gunicorn", "waitress"]


@dataclass
class Faults:
    """The fault windows injected, as (start, end, kind) in monotonic time."""

    windows: list[tuple[float, float, str]] = field(default_factory=list)

    def explain(self, at: float) -> bool:
        return any(start <= at <= end + AFTERMATH for start, end, _ in self.windows)


def _proc_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(
        int(line.split()[1])
        for line in status.splitlines()
        if line.startswith("VmRSS:")
    )
    return {
        "rss_kib": rss,
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _settled_figures(pid: int, warm: dict[str, int]) -> dict[str, int]:
    """The figures once threads and open files are back within their growth bounds
    over ``warm``, or as they are after ``SETTLE_SECONDS`` if they never are."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        figures = _proc_figures(pid)
        settled = (
            figures["threads"] <= warm["threads"] + THREAD_GROWTH
            and figures["fds"] <= warm["fds"] + FD_GROWTH
        )
        if settled or time.monotonic() >= deadline:
            return figures
        time.sleep(0.05)


def _serving_pid(pid: int, server: str) -> int:
    """The process that holds the cache: gunicorn's one worker, or waitress itself."""
    if server == "waitress":
        return pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("gunicorn started no worker")


@pytest.mark.parametrize("server", SERVERS)
def test_soak(moto_url, secretsmanager, unique, start_sidecar, server):
    names = [unique(f"soak-{i:03d}") for i in range(SECRETS)]
    held: dict[str, set[str]] = {}
    held_lock = threading.Lock()
    for name in names:
        held[name] = {f"{name}#0"}
        secretsmanager.create_secret(Name=name, SecretString=f"{name}#0")

    with FaultProxy(moto_url) as proxy:
        env = sidecar_env(
            moto_url,
            CACHECORE_TOKEN=TOKEN,
            CACHECORE_TTL="2",
            CACHECORE_UPSTREAM_TIMEOUT=str(TIMEOUT),
            CACHECORE_BACKOFF_MAX_SECONDS=str(BACKOFF_MAX),
            CACHECORE_REFRESH_MIN_INTERVAL="0.5",
        )
        env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = proxy.url
        sidecar = start_sidecar("--threads", "16", server=server, env=env)
        serving = _serving_pid(sidecar.process.pid, server)

        stop = threading.Event()
        faults = Faults()
        statuses: Counter[int] = Counter()
        wrong: list[str] = []
        unexplained: list[tuple[float, int]] = []
        rotations = [0]
        lock = threading.Lock()
        began = time.monotonic()

        def client(seed: int) -> None:
            chooser = random.Random(seed)
            connection = http.client.HTTPConnection(HOST, sidecar.port, timeout=15)
            while not stop.is_set():
                name = chooser.choice(names)
                refresh = "&refreshNow=true" if chooser.random() < 0.02 else ""
                try:
                    connection.request(
                        "GET",
                        f"/secretsmanager/get?secretId={name}{refresh}",
                        headers={TOKEN_HEADER: TOKEN},
                    )
                    response = connection.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException):
                    connection.close()
                    connection = http.client.HTTPConnection(
                        HOST, sidecar.port, timeout=15
                    )
                    with lock:
                        statuses[0] += 1
                        unexplained.append((time.monotonic(), 0))
                    continue
                at = time.monotonic()
                with lock:
                    statuses[response.status] += 1
                    if response.status == 200:
                        value = json.loads(body)["SecretString"]
                        with held_lock:
                            if value not in held[name]:
                                wrong.append(name)
                    elif response.status not in (429, 502, 504) or not faults.explain(
                        at
                    ):
                        unexplained.append((at, response.status))
            connection.close()

        def rotate() -> None:
            chooser = random.Random(7)
            generation = 0
            while not stop.wait(0.25):
                generation += 1
                name = chooser.choice(names)
                value = f"{name}#{generation}"
                with held_lock:
                    held[name].add(value)  # before moto has it: any answer is held
                secretsmanager.put_secret_value(SecretId=name, SecretString=value)
                rotations[0] += 1

        def inject() -> None:
            schedule = [
                ("throttle", 2.5),
                ("error500", 2.5),
                ("delay", 2.5),
                ("reset", 2.5),
                ("black_hole", 2.0),
            ]
            turn = 0
            while not stop.wait(4.0):
                if time.monotonic() - began > DURATION - QUIET_END - 3.0:
                    break
                kind, seconds = schedule[turn % len(schedule)]
                turn += 1
                start = time.monotonic()
                if kind in ("throttle", "error500"):
                    proxy.fail("GetSecretValue", kind)
                elif kind == "delay":
                    proxy.delay("GetSecretValue", 0.6)
                elif kind == "reset":
                    proxy.reset("GetSecretValue")
                else:
                    proxy.black_hole("GetSecretValue")
                stop.wait(seconds)
                proxy.clear("GetSecretValue")
                proxy.delay("GetSecretValue", 0)
                faults.windows.append((start, time.monotonic(), kind))

        workers = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        workers += [threading.Thread(target=rotate), threading.Thread(target=inject)]
        for worker in workers:
            worker.start()
        try:
            stop.wait(WARM_UP)
            warm = _proc_figures(serving)
            stop.wait(DURATION - WARM_UP)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        end = _settled_figures(serving, warm)
        calls = proxy.calls("GetSecretValue")
        code = sidecar.stop()

    report = {
        "server": server,
        "seconds": round(time.monotonic() - began, 1),
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rotations": rotations[0],
        "fault_windows": [kind for _, _, kind in faults.windows],
        "upstream_calls": calls,
        "wrong_values": len(wrong),
        "unexplained": len(unexplained),
        "rss_mib": [round(warm["rss_kib"] / 1024, 1), round(end["rss_kib"] / 1024, 1)],
        "threads": [warm["threads"], end["threads"]],
        "fds": [warm["fds"], end["fds"]],
        "exit_code": code,
    }
    print(json.dumps(report))
    target = os.environ.get("CACHECORE_SOAK_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps(report) + "\n")

    assert report["requests"] > 1000
    assert not wrong, f"values no secret ever held: {wrong[:5]}"
    assert not unexplained, f"answers no fault explains: {unexplained[:10]}"
    assert len(faults.windows) >= 5
    assert (end["rss_kib"] - warm["rss_kib"]) / 1024 <= RSS_GROWTH_MIB
    assert end["threads"] <= warm["threads"] + THREAD_GROWTH
    assert end["fds"] <= warm["fds"] + FD_GROWTH
    assert code == 0
