"""SecretCache against a reference model, under random interleavings (hypothesis).

The model is the policy written as plainly as possible: a dict of keys, each with
its last value and its failures, and no threads. The machine drives the real cache
(through ``lookup`` and ``get``) and the model with the same gets, forced
refreshes, rotations, failures of every class and clock advances, and after each
read compares what a caller would see: the value, its state (hit, miss, stale),
the error class, and whether the backend was called.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cachecore import (
    AccessDeniedError,
    Config,
    DecryptionError,
    FetchError,
    InvalidRequestError,
    SecretCache,
    SecretNotFoundError,
    SecretValue,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

KEYS = ("a", "b", "c")
FAILURES = (
    ThrottledError,
    UpstreamUnavailableError,
    UpstreamTimeoutError,
    AccessDeniedError,
    SecretNotFoundError,
    DecryptionError,
    InvalidRequestError,
)
# Small whole and half numbers, so that random walks of the clock land exactly on
# the boundaries (expiry, end of backoff, end of max staleness) often.
TTL = 4
MAX_ENTRIES = 2
REFRESH_MIN_INTERVAL = 2.0
MAX_STALE = 6.0
BACKOFF_BASE = 1.0
BACKOFF_GROWTH = 2.0
BACKOFF_MAX = 8.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """The secrets as they are upstream, and the failure each key has now."""

    def __init__(self) -> None:
        self.generation = dict.fromkeys(KEYS, 0)
        self.failure: dict[str, type[FetchError] | None] = dict.fromkeys(KEYS)
        self.calls = 0

    def fetch(self, secret_id, *, version_id=None, version_stage=None):
        self.calls += 1
        failure = self.failure[secret_id]
        if failure is not None:
            raise failure("injected", secret_id=secret_id)
        return SecretValue(
            name=secret_id, secret_string=f"{secret_id}@{self.generation[secret_id]}"
        )


@dataclass
class Known:
    value: str | None = None
    fetched_at: float = 0.0
    expires_at: float = float("-inf")
    error: type[FetchError] | None = None
    failures: int = 0
    retry_at: float = float("-inf")
    refreshed_at: float = float("-inf")


class Model:
    """The policy, plainly. Answers (outcome, value or error class, called)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.known: OrderedDict[str, Known] = OrderedDict()

    def _touch(self, key: str) -> None:
        self.known.move_to_end(key)
        while len(self.known) > MAX_ENTRIES:
            self.known.popitem(last=False)

    def get(self, key: str, refresh: bool, now: float):
        k = self.known.get(key)
        if k is not None:
            capped = refresh and now - k.refreshed_at < REFRESH_MIN_INTERVAL
            if k.value is not None:
                fresh = now < k.expires_at
                if fresh and (not refresh or capped):
                    self._touch(key)
                    return "hit", k.value, False
                failing = now < k.retry_at or (capped and k.error is not None)
                if failing and now < k.expires_at + MAX_STALE:
                    self._touch(key)
                    return "stale", k.value, False
            if k.error is not None and (now < k.retry_at or capped):
                self._touch(key)
                return "error", k.error, False

        failure = self.backend.failure[key]
        k = self.known.setdefault(key, Known())
        if failure is None:
            k.value = f"{key}@{self.backend.generation[key]}"
            k.fetched_at = now
            k.expires_at = now + TTL
            k.error, k.failures, k.retry_at = None, 0, float("-inf")
            k.refreshed_at = now if refresh else float("-inf")
            self._touch(key)
            return "miss", k.value, True
        k.failures += 1
        k.error = failure
        k.retry_at = now + min(
            BACKOFF_MAX, BACKOFF_BASE * BACKOFF_GROWTH ** (k.failures - 1)
        )
        if refresh:
            k.refreshed_at = now
        value = k.value
        if not failure.transient:
            k.value, k.expires_at = None, float("-inf")
        self._touch(key)
        if failure.transient and value is not None and now < k.expires_at + MAX_STALE:
            return "stale", value, True
        return "error", failure, True


class CacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.backend = Backend()
        self.model = Model(self.backend)
        config = Config(
            ttl=TTL,
            ttl_jitter=0,
            max_entries=MAX_ENTRIES,
            refresh_min_interval=REFRESH_MIN_INTERVAL,
            max_stale=MAX_STALE,
            backoff_base_seconds=BACKOFF_BASE,
            backoff_growth=BACKOFF_GROWTH,
            backoff_max_seconds=BACKOFF_MAX,
        )
        self.cache = SecretCache(self.backend, config, clock=self.clock)

    @rule(key=st.sampled_from(KEYS), refresh=st.booleans())
    def read(self, key: str, refresh: bool) -> None:
        now = self.clock()
        expected = self.model.get(key, refresh, now)
        calls = self.backend.calls
        try:
            lookup = self.cache.lookup(key, refresh=refresh)
        except FetchError as exc:
            actual = ("error", type(exc), self.backend.calls > calls)
        else:
            actual = (
                lookup.state,
                lookup.value.secret_string,
                self.backend.calls > calls,
            )
            assert lookup.age == now - lookup.value.fetched_at
        assert actual == expected

    @rule(key=st.sampled_from(KEYS), refresh=st.booleans())
    def get(self, key: str, refresh: bool) -> None:
        # get() answers a fresh hit by a path of its own: the value must agree.
        now = self.clock()
        outcome, expected, called = self.model.get(key, refresh, now)
        calls = self.backend.calls
        try:
            value = self.cache.get(key, refresh=refresh)
        except FetchError as exc:
            actual = ("error", type(exc), self.backend.calls > calls)
        else:
            actual = ("value", value.secret_string, self.backend.calls > calls)
        kind = "error" if outcome == "error" else "value"
        assert actual == (kind, expected, called)

    @rule(key=st.sampled_from(KEYS))
    def rotate(self, key: str) -> None:
        self.backend.generation[key] += 1

    @rule(key=st.sampled_from(KEYS), failure=st.sampled_from((None, *FAILURES)))
    def set_failure(self, key: str, failure: type[FetchError] | None) -> None:
        self.backend.failure[key] = failure

    @rule(seconds=st.sampled_from((0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0)))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def entries_stay_within_the_bound(self) -> None:
        assert self.cache.stats().entries <= MAX_ENTRIES


CacheMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestCacheAgainstModel = CacheMachine.TestCase
