"""32 threads on one SecretCache with a slow, flaky fetcher and the real clock.

Bounded: a fixed number of reads per thread, and every join has a timeout.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict

import pytest

from cachecore import (
    Config,
    FetchError,
    SecretCache,
    SecretValue,
    ThrottledError,
    UpstreamUnavailableError,
)

THREADS = 32
READS_PER_THREAD = 300
KEYS = [f"app/{i}" for i in range(12)]


class FlakyFetcher:
    """Sleeps a little, fails sometimes, and records what it did per key."""

    def __init__(self, failure_rate: float, seed: int) -> None:
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self.returned: dict[str, set[str]] = defaultdict(set)

    def fetch(self, secret_id, *, version_id=None, version_stage=None):
        with self.lock:
            self.calls[secret_id] += 1
            self.in_flight[secret_id] += 1
            self.most_in_flight[secret_id] = max(
                self.most_in_flight[secret_id], self.in_flight[secret_id]
            )
            delay = self.random.uniform(0, 0.003)
            fail = self.random.random() < self.failure_rate
            kind = self.random.choice([ThrottledError, UpstreamUnavailableError])
            payload = f"{secret_id}#{self.calls[secret_id]}"
        try:
            time.sleep(delay)
            if fail:
                raise kind("injected", secret_id=secret_id)
            with self.lock:
                self.returned[secret_id].add(payload)
            return SecretValue(name=secret_id, secret_string=payload)
        finally:
            with self.lock:
                self.in_flight[secret_id] -= 1


Answer = tuple[str, str | None, str]  # key, payload (None: an error), state


def hammer(cache: SecretCache, seed: int) -> list[Answer]:
    rng = random.Random(seed)
    seen: list[Answer] = []
    for _ in range(READS_PER_THREAD):
        key = rng.choice(KEYS)
        try:
            lookup = cache.lookup(key, refresh=rng.random() < 0.2)
        except FetchError:
            seen.append((key, None, "error"))
        else:
            seen.append((key, lookup.value.secret_string, lookup.state))
    return seen


def run_threads(cache: SecretCache) -> list[Answer]:
    results: list[list[Answer]] = [[] for _ in range(THREADS)]

    def work(index: int) -> None:
        results[index] = hammer(cache, seed=index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stuck = [thread for thread in threads if thread.is_alive()]
    assert not stuck, f"{len(stuck)} threads still running: a deadlock"
    return [answer for per_thread in results for answer in per_thread]


@pytest.mark.parametrize("seed", [1, 2])
def test_long_timers_bound_upstream_calls_per_key_to_the_policy(seed):
    # With TTL, refresh interval and backoff all far longer than the test, the
    # policy allows each key one plain fetch and one forced refresh at most; a
    # failure ends the key's calls until its backoff ends.
    fetcher = FlakyFetcher(failure_rate=0.2, seed=seed)
    config = Config(
        ttl=3600,
        refresh_min_interval=3600,
        backoff_base_seconds=3600,
        backoff_max_seconds=3600,
    )
    cache = SecretCache(fetcher, config)

    answers = run_threads(cache)

    assert len(answers) == THREADS * READS_PER_THREAD
    for key, payload, _ in answers:
        assert payload is None or payload in fetcher.returned[key]
    assert max(fetcher.calls.values()) <= 2
    assert max(fetcher.most_in_flight.values()) == 1
    assert cache.stats().upstream_calls == sum(fetcher.calls.values())


def test_short_timers_keep_one_call_per_key_at_a_time():
    fetcher = FlakyFetcher(failure_rate=0.1, seed=3)
    config = Config(
        ttl=1,
        refresh_min_interval=0.01,
        backoff_base_seconds=0.005,
        backoff_max_seconds=0.02,
        max_entries=8,  # fewer than the keys: eviction under load too
    )
    cache = SecretCache(fetcher, config)

    answers = run_threads(cache)

    for key, payload, _ in answers:
        assert payload is None or payload in fetcher.returned[key]
    assert max(fetcher.most_in_flight.values()) == 1
    states = Counter(state for _, _, state in answers)
    stats = cache.stats()
    assert stats.entries <= 8
    assert stats.hits == states["hit"]
    assert stats.stale == states["stale"]
    assert stats.misses >= states["miss"]
    assert stats.hits + stats.misses + stats.backoff_errors + stats.stale >= len(
        answers
    )
