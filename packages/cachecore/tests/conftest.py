"""Fakes for the unit tests of cachecore: a clock that moves only when told, and a
fetcher that records its calls and can be made to block or fail on demand."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from cachecore import SecretValue


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeFetcher:
    """Answers ``<secret_id>@<generation>``; ``set_error`` makes a key fail.

    ``gate`` (when set) makes every fetch wait until it is opened; ``entered`` is
    set once a fetch is waiting at the gate.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.generation: dict[str, int] = defaultdict(int)
        self.errors: dict[str, BaseException] = {}
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.binary: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.on_fetch: Callable[[str], None] | None = None

    def rotate(self, secret_id: str) -> None:
        self.generation[secret_id] += 1

    def value_of(self, secret_id: str) -> str:
        return f"{secret_id}@{self.generation[secret_id]}"

    def fetch(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
    ) -> SecretValue:
        with self._lock:
            self.calls.append((secret_id, version_id, version_stage))
        if self.on_fetch is not None:
            self.on_fetch(secret_id)
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(timeout=30), "test gate never opened"
        if secret_id in self.errors:
            raise self.errors[secret_id]
        if secret_id in self.binary:
            return SecretValue(name=secret_id, secret_binary=self.binary[secret_id])
        suffix = f"|{version_id}|{version_stage}" if version_id or version_stage else ""
        return SecretValue(
            name=secret_id,
            arn=f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret_id}",
            version_id=f"v{self.generation[secret_id]}",
            version_stages=("AWSCURRENT",),
            secret_string=self.value_of(secret_id) + suffix,
        )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.001)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


@pytest.fixture
def poll() -> Callable[..., None]:
    return wait_until
