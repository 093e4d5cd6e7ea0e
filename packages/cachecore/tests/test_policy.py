"""The cache policy of issue 3 with a fake clock: jitter, forced-refresh cap, error
backoff, stale-if-error, revocations, refresh-ahead and prefetch."""

from __future__ import annotations

import threading

import pytest

from cachecore import (
    AccessDeniedError,
    Config,
    DecryptionError,
    InvalidRequestError,
    SecretCache,
    SecretNotFoundError,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

TRANSIENT = [ThrottledError, UpstreamUnavailableError, UpstreamTimeoutError]
PERMANENT = [
    AccessDeniedError,
    SecretNotFoundError,
    DecryptionError,
    InvalidRequestError,  # e.g. "marked for deletion"
]


def make_cache(fetcher, clock, random=lambda: 0.0, **settings):
    return SecretCache(fetcher, Config(**settings), clock=clock, random=random)


# --- TTL jitter --------------------------------------------------------------


def test_jitter_shortens_the_ttl_by_at_most_its_fraction(fetcher, clock):
    cache = make_cache(fetcher, clock, random=lambda: 0.999999, ttl=300)
    cache.get("db")
    fetcher.rotate("db")

    clock.advance(269.9)
    assert cache.get("db").secret_string == "db@0"
    clock.advance(0.2)
    assert cache.get("db").secret_string == "db@1"


def test_jitter_never_lengthens_the_ttl(fetcher, clock):
    cache = make_cache(fetcher, clock, random=lambda: 0.0, ttl=300, ttl_jitter=0.5)
    cache.get("db")
    fetcher.rotate("db")

    clock.advance(300)

    assert cache.get("db").secret_string == "db@1"


def test_jitter_spreads_expiry_of_a_fleet(fetcher, clock):
    import random

    rng = random.Random(7)
    expiries = set()
    for _ in range(20):
        cache = make_cache(fetcher, clock, random=rng.random, ttl=300)
        cache.get("db")
        expiries.add(
            round(cache._entries[("secret", "db", None, None)].expires_at - clock())
        )

    assert len(expiries) > 5
    assert all(270 <= e <= 300 for e in expiries)


# --- forced refresh ------------------------------------------------------------


def test_refresh_storm_is_capped_to_one_call_per_interval(fetcher, clock):
    cache = make_cache(fetcher, clock, refresh_min_interval=1.0)
    cache.get("db")

    for _ in range(100):
        cache.get("db", refresh=True)
        clock.advance(0.01)  # 100 refreshes over one second

    assert len(fetcher.calls) == 2  # the first read, then one refresh
    clock.advance(0.01)
    cache.get("db", refresh=True)
    assert len(fetcher.calls) == 3


def test_refresh_after_a_plain_fetch_reaches_the_backend_at_once(fetcher, clock):
    cache = make_cache(fetcher, clock, refresh_min_interval=60)
    cache.get("db")
    fetcher.rotate("db")

    assert cache.get("db", refresh=True).secret_string == "db@1"


def test_capped_refresh_returns_the_value_the_last_refresh_fetched(fetcher, clock):
    cache = make_cache(fetcher, clock, refresh_min_interval=5)
    cache.get("db", refresh=True)
    fetcher.rotate("db")

    lookup = cache.lookup("db", refresh=True)

    assert (lookup.value.secret_string, lookup.state) == ("db@0", "hit")
    clock.advance(5)
    assert cache.get("db", refresh=True).secret_string == "db@1"


def test_forced_refresh_in_backoff_answers_the_stored_value_without_a_call(
    fetcher, clock
):
    cache = make_cache(fetcher, clock, ttl=60, backoff_base_seconds=30)
    cache.get("db")
    fetcher.errors["db"] = UpstreamUnavailableError("down", secret_id="db")
    clock.advance(61)
    assert cache.lookup("db").state == "stale"
    calls = len(fetcher.calls)

    lookup = cache.lookup("db", refresh=True)

    assert (lookup.value.secret_string, lookup.state) == ("db@0", "stale")
    assert len(fetcher.calls) == calls
    assert clock() == 1061  # nothing slept


def test_forced_refresh_that_fails_transiently_serves_the_fresh_value(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=300)
    cache.get("db")
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    lookup = cache.lookup("db", refresh=True)

    assert (lookup.value.secret_string, lookup.state) == ("db@0", "stale")
    assert cache.lookup("db").state == "hit"  # still within its TTL


# --- backoff -------------------------------------------------------------------


def test_backoff_grows_by_the_factor_and_stops_at_the_cap(fetcher, clock):
    cache = make_cache(
        fetcher,
        clock,
        backoff_base_seconds=1,
        backoff_growth=2,
        backoff_max_seconds=10,
    )

    assert [cache.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_calls_within_backoff_get_the_stored_error_without_a_call(fetcher, clock):
    cache = make_cache(fetcher, clock, backoff_base_seconds=1, backoff_growth=2)
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")
    call_times = []

    while len(call_times) < 5:
        calls = len(fetcher.calls)
        with pytest.raises(ThrottledError):
            cache.get("db")
        if len(fetcher.calls) > calls:
            call_times.append(clock())
        clock.advance(0.25)

    gaps = [b - a for a, b in zip(call_times, call_times[1:], strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    assert cache.stats().backoff_errors == 4 + 8 + 16 + 32 - 4


def test_success_resets_the_backoff(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=0, backoff_base_seconds=1)
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")
    for _ in range(3):
        with pytest.raises(ThrottledError):
            cache.get("db")
        clock.advance(cache.backoff(8))
    del fetcher.errors["db"]
    cache.get("db")
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    with pytest.raises(ThrottledError):
        cache.get("db")
    clock.advance(1.0)  # the first backoff again, not the fourth

    calls = len(fetcher.calls)
    with pytest.raises(ThrottledError):
        cache.get("db")
    assert len(fetcher.calls) == calls + 1


def test_a_very_long_outage_keeps_the_backoff_finite_and_positive(fetcher, clock):
    cache = make_cache(
        fetcher,
        clock,
        ttl=0,
        backoff_base_seconds=1,
        backoff_growth=10,
        backoff_max_seconds=600,
    )
    fetcher.errors["db"] = UpstreamUnavailableError("down", secret_id="db")

    for _ in range(2000):
        with pytest.raises(UpstreamUnavailableError):
            cache.get("db")
        clock.advance(600)

    assert cache.backoff(10**9) == 600
    assert 0 < cache.backoff(0) <= 600


# --- stale-if-error and revocations -------------------------------------------


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_failure_serves_the_expired_value_marked_stale(fetcher, clock, kind):
    cache = make_cache(fetcher, clock, ttl=60, max_stale=100)
    cache.get("db")
    fetcher.errors["db"] = kind("upstream trouble", secret_id="db")

    clock.advance(60 + 99.5)
    stale = cache.lookup("db")

    assert (stale.value.secret_string, stale.state, stale.age) == (
        "db@0",
        "stale",
        159.5,
    )
    assert cache.stats().stale == 1


@pytest.mark.parametrize("kind", TRANSIENT)
def test_stale_value_is_not_served_past_max_stale(fetcher, clock, kind):
    cache = make_cache(fetcher, clock, ttl=60, max_stale=100)
    cache.get("db")
    fetcher.errors["db"] = kind("upstream trouble", secret_id="db")

    clock.advance(60 + 100)  # max_stale seconds past expiry: no longer served

    with pytest.raises(kind):
        cache.get("db")


@pytest.mark.parametrize("kind", PERMANENT)
def test_revocation_is_never_masked_by_a_stale_value(fetcher, clock, kind):
    cache = make_cache(fetcher, clock, ttl=60, max_stale=3600)
    cache.get("db")
    fetcher.errors["db"] = kind("revoked", secret_id="db")
    clock.advance(61)

    with pytest.raises(kind):
        cache.get("db")

    # The revoked value is gone: a transient failure later cannot bring it back.
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")
    clock.advance(cache.backoff(64))
    with pytest.raises(ThrottledError):
        cache.get("db")


@pytest.mark.parametrize("kind", PERMANENT)
def test_revocation_seen_by_a_forced_refresh_drops_the_fresh_value(
    fetcher, clock, kind
):
    cache = make_cache(fetcher, clock, ttl=300)
    cache.get("db")
    fetcher.errors["db"] = kind("revoked", secret_id="db")

    with pytest.raises(kind):
        cache.get("db", refresh=True)
    with pytest.raises(kind):
        cache.get("db")


def test_transient_failure_is_never_reported_as_not_found(fetcher, clock):
    cache = make_cache(fetcher, clock)
    fetcher.errors["db"] = UpstreamTimeoutError("no answer", secret_id="db")

    with pytest.raises(UpstreamTimeoutError) as caught:
        cache.get("db")

    assert not isinstance(caught.value, SecretNotFoundError)


def test_ttl_zero_never_answers_a_value_from_the_cache(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=0, max_stale=3600)
    cache.get("db")
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    with pytest.raises(ThrottledError):
        cache.get("db")
    with pytest.raises(ThrottledError):
        cache.get("db", refresh=True)


# --- refresh-ahead -------------------------------------------------------------


def test_refresh_ahead_refetches_a_hot_key_in_the_background(fetcher, clock, poll):
    cache = make_cache(fetcher, clock, ttl=100, refresh_ahead=0.2)
    cache.get("db")
    fetcher.rotate("db")

    clock.advance(79)
    assert cache.lookup("db").state == "hit"
    assert len(fetcher.calls) == 1
    clock.advance(2)  # now in the last fifth of the TTL
    early = cache.lookup("db")
    poll(lambda: cache.stats().upstream_calls == 2)

    assert (early.state, early.value.secret_string) == ("hit", "db@0")
    poll(lambda: cache.get("db").secret_string == "db@1")
    assert cache.lookup("db").state == "hit"
    cache.close()


def test_refresh_ahead_is_off_by_default(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=100)
    cache.get("db")

    clock.advance(99)
    cache.get("db")

    assert len(fetcher.calls) == 1


# --- prefetch ------------------------------------------------------------------


class BatchFetcher:
    """Wraps a FakeFetcher with a fetch_many that records its batches."""

    def __init__(self, inner, denied=False, clock=None, cost=0.0):
        self.inner = inner
        self.batches: list[list[str]] = []
        self.denied = denied
        self.clock = clock
        self.cost = cost

    def fetch(self, secret_id, **kwargs):
        return self.inner.fetch(secret_id, **kwargs)

    def fetch_many(self, secret_ids):
        if self.denied:
            raise AccessDeniedError("no BatchGetSecretValue for you")
        self.batches.append(list(secret_ids))
        if self.clock is not None:
            self.clock.advance(self.cost)
        values, errors = {}, {}
        for secret_id in secret_ids:
            if secret_id in self.inner.errors:
                errors[secret_id] = self.inner.errors[secret_id]
            else:
                values[secret_id] = self.inner.fetch(secret_id)
        return values, errors


def test_prefetch_uses_batches_of_twenty_and_fails_only_failing_ids(fetcher, clock):
    ids = [f"app/{i}" for i in range(45)]
    fetcher.errors["app/7"] = SecretNotFoundError("gone", secret_id="app/7")
    batch = BatchFetcher(fetcher)
    cache = make_cache(batch, clock)

    failed = cache.prefetch(ids)

    assert [len(b) for b in batch.batches] == [20, 20, 5]
    assert set(failed) == {"app/7"}
    assert isinstance(failed["app/7"], SecretNotFoundError)
    calls = len(fetcher.calls)
    assert cache.get("app/44").secret_string == "app/44@0"
    assert len(fetcher.calls) == calls


def test_prefetch_falls_back_to_single_reads_when_batches_are_denied(fetcher, clock):
    cache = make_cache(BatchFetcher(fetcher, denied=True), clock)

    failed = cache.prefetch(["a", "b", "c"])

    assert failed == {}
    assert [c[0] for c in fetcher.calls] == ["a", "b", "c"]


def test_prefetch_is_bounded_in_time(fetcher, clock):
    ids = [f"app/{i}" for i in range(100)]
    batch = BatchFetcher(fetcher, clock=clock, cost=4.0)
    cache = make_cache(batch, clock)

    failed = cache.prefetch(ids, timeout=10)

    assert len(batch.batches) == 3  # at 0 s, 4 s and 8 s; none at 12 s
    assert set(failed) == set(ids[60:])
    assert all(isinstance(e, UpstreamTimeoutError) for e in failed.values())


def test_prefetch_reports_impossible_ids_without_calling(fetcher, clock):
    cache = make_cache(BatchFetcher(fetcher), clock)

    failed = cache.prefetch(["", "ok"])

    assert set(failed) == {""}
    assert isinstance(failed[""], InvalidRequestError)


def test_concurrent_reads_during_a_failing_fetch_share_its_stale_answer(
    fetcher, clock, poll
):
    cache = make_cache(fetcher, clock, ttl=10)
    cache.get("db")
    clock.advance(11)
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")
    fetcher.gate = threading.Event()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.lookup("db")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    poll(lambda: cache.stats().coalesced == 7)
    fetcher.gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert [r.state for r in results] == ["stale"] * 8
    assert len(fetcher.calls) == 2


def test_max_stale_zero_never_serves_an_expired_value(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=10, max_stale=0)
    cache.get("db")
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    clock.advance(10)

    with pytest.raises(ThrottledError):
        cache.get("db")


def test_forced_refresh_cap_holds_while_the_backend_fails(fetcher, clock):
    cache = make_cache(
        fetcher,
        clock,
        refresh_min_interval=10,
        backoff_base_seconds=1,
        backoff_growth=1,
        backoff_max_seconds=1,
    )
    cache.get("db")
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    for _ in range(10):
        cache.lookup("db", refresh=True)
        clock.advance(1)

    assert len(fetcher.calls) == 2  # the first read, then one refresh in 10 s


def test_refresh_after_an_ordinary_fetch_calls_even_within_the_interval(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=1, refresh_min_interval=60)
    cache.get("db", refresh=True)
    clock.advance(2)
    cache.get("db")  # expired: an ordinary fetch
    fetcher.rotate("db")

    assert cache.get("db", refresh=True).secret_string == "db@1"


def test_refresh_ahead_with_jitter_waits_for_its_own_window(fetcher, clock):
    cache = make_cache(
        fetcher,
        clock,
        random=lambda: 0.9,
        ttl=100,
        ttl_jitter=0.5,
        refresh_ahead=0.9,
    )
    cache.get("db")  # the TTL is 55 s; the window opens 5.5 s in

    for _ in range(100):
        clock.advance(0.01)
        cache.get("db")

    assert len(fetcher.calls) == 1
    cache.close()


def test_a_fetcher_that_answers_nothing_leaves_no_key_stuck(fetcher, clock):
    cache = make_cache(fetcher, clock, backoff_base_seconds=1)
    original = fetcher.fetch
    fetcher.fetch = lambda *a, **k: None  # type: ignore[method-assign]

    with pytest.raises(UpstreamUnavailableError, match="not a value"):
        cache.get("db")
    fetcher.fetch = original  # type: ignore[method-assign]
    clock.advance(1)

    assert cache.get("db").secret_string == "db@0"


def test_an_interrupt_while_storing_leaves_no_key_stuck(fetcher, clock):
    interrupts = [KeyboardInterrupt()]

    def random():
        if interrupts:
            raise interrupts.pop()
        return 0.0

    cache = make_cache(fetcher, clock, random=random)
    # The call runs in a thread of its own: its caller learns of the interrupt.
    with pytest.raises(UpstreamUnavailableError, match="interrupted"):
        cache.get("db")

    done = []
    reader = threading.Thread(target=lambda: done.append(cache.get("db")))
    reader.start()
    reader.join(timeout=10)

    assert done and done[0].secret_string == "db@0"


def test_stored_errors_reach_each_caller_as_its_own_exception(fetcher, clock):
    cache = make_cache(fetcher, clock, backoff_base_seconds=30)
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")
    caught = []
    for _ in range(3):
        try:
            cache.get("db")
        except ThrottledError as exc:
            caught.append(exc)

    assert len({id(e) for e in caught}) == 3
    assert {(type(e), e.code, e.secret_id) for e in caught} == {
        (ThrottledError, "ThrottlingException", "db")
    }


def test_prefetch_never_overwrites_what_a_read_saw_meanwhile(fetcher, clock):
    cache = make_cache(fetcher, clock)
    batch = BatchFetcher(fetcher)
    inner = batch.fetch_many

    def slow_batch(ids):
        answer = inner(ids)  # the batch read generation 0 ...
        fetcher.rotate("db")  # ... then the secret rotated ...
        cache.get("db", refresh=True)  # ... and a reader saw generation 1
        fetcher.errors["gone"] = AccessDeniedError("revoked", secret_id="gone")
        with pytest.raises(AccessDeniedError):
            cache.get("gone")  # ... and another saw a revocation
        return answer

    batch.fetch_many = slow_batch  # type: ignore[method-assign]
    cache = make_cache(batch, clock)

    cache.prefetch(["db", "gone"])

    assert cache.lookup("db").value.secret_string == "db@1"
    with pytest.raises(AccessDeniedError):
        cache.get("gone")


def test_prefetch_failures_are_recorded_like_reads(fetcher, clock):
    cache = make_cache(BatchFetcher(fetcher), clock)
    cache.get("db")
    fetcher.errors["db"] = AccessDeniedError("revoked", secret_id="db")

    failed = cache.prefetch(["db"])

    assert isinstance(failed["db"], AccessDeniedError)
    with pytest.raises(AccessDeniedError):  # the revoked value is gone
        cache.get("db")


def test_prefetch_timeout_holds_between_single_fetches(fetcher, clock):
    def slow(secret_id):
        clock.advance(0.2)

    fetcher.on_fetch = slow
    cache = make_cache(fetcher, clock)

    failed = cache.prefetch([f"app/{i}" for i in range(20)], timeout=0.5)

    assert len(fetcher.calls) == 3  # at 0, 0.2 and 0.4 s
    assert len(failed) == 17


def test_backoff_stops_serving_stale_at_max_stale(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=60, max_stale=100, backoff_base_seconds=30)
    cache.get("db")
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")
    clock.advance(150)
    assert cache.lookup("db").state == "stale"  # the call fails; backoff to 180 s
    calls = len(fetcher.calls)

    clock.advance(9.5)
    assert cache.lookup("db").state == "stale"  # from the backoff, no call
    clock.advance(0.5)  # exactly max_stale past expiry, still backing off
    with pytest.raises(ThrottledError):
        cache.get("db")
    assert len(fetcher.calls) == calls


# --- a call that does not end ------------------------------------------------


def test_a_caller_waits_for_a_hanging_call_at_most_the_upstream_timeout(fetcher, clock):
    cache = make_cache(fetcher, clock, upstream_timeout=0.2)
    fetcher.gate = threading.Event()
    try:
        with pytest.raises(UpstreamTimeoutError, match="within 0.2s"):
            cache.get("db")
        assert cache.stats().timed_out == 1
    finally:
        fetcher.gate.set()


def test_the_hanging_call_is_kept_when_it_ends_late(fetcher, clock, poll):
    cache = make_cache(fetcher, clock, upstream_timeout=0.2)
    fetcher.gate = threading.Event()
    with pytest.raises(UpstreamTimeoutError):
        cache.get("db")

    fetcher.gate.set()
    poll(lambda: cache.stats().entries == 1)  # the call's thread stores it when it ends

    assert cache.lookup("db").state == "hit"
    assert len(fetcher.calls) == 1


def test_a_stored_value_is_served_stale_while_a_call_hangs(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=60, upstream_timeout=0.2)
    cache.get("db")
    clock.advance(61)
    fetcher.gate = threading.Event()
    try:
        lookup = cache.lookup("db")
        hanging = fetcher.entered.is_set()
    finally:
        fetcher.gate.set()

    assert (lookup.state, lookup.value.secret_string) == ("stale", "db@0")
    assert hanging, "the stale answer came before the call reached the upstream"
    assert len(fetcher.calls) == 2


def test_a_hanging_call_delays_no_other_key(fetcher, clock):
    cache = make_cache(fetcher, clock, upstream_timeout=5)
    cache.get("fast")
    fetcher.gate = threading.Event()
    waiting = threading.Thread(target=lambda: cache.lookup("slow"), daemon=True)
    waiting.start()
    assert fetcher.entered.wait(5)
    try:
        assert cache.lookup("fast").state == "hit"
    finally:
        fetcher.gate.set()
        waiting.join(5)


def test_a_caller_with_a_stored_value_does_not_join_a_call_already_slow(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=60, upstream_timeout=30)
    cache.get("db")
    clock.advance(61)
    fetcher.gate = threading.Event()
    first = threading.Thread(target=lambda: cache.lookup("db"), daemon=True)
    first.start()
    assert fetcher.entered.wait(5)
    clock.advance(1.5)  # the call has run longer than STALE_AFTER
    try:
        lookup = cache.lookup("db")  # would wait up to 30 s if it joined
    finally:
        fetcher.gate.set()
        first.join(5)

    assert (lookup.state, lookup.value.secret_string) == ("stale", "db@0")
    assert len(fetcher.calls) == 2
