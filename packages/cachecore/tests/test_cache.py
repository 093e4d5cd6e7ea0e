from __future__ import annotations

import threading

import pytest

from cachecore import (
    Config,
    InvalidRequestError,
    SecretCache,
    SecretNotFoundError,
    ThrottledError,
)


def make_cache(fetcher, clock, **settings):
    settings.setdefault("ttl_jitter", 0)
    return SecretCache(fetcher, Config(**settings), clock=clock)


def test_get_fetches_once_then_serves_hits_without_upstream_call(fetcher, clock):
    cache = make_cache(fetcher, clock)

    first = cache.get("db")
    second = cache.get("db")

    assert first.secret_string == "db@0"
    assert second is first
    assert fetcher.calls == [("db", None, None)]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.upstream_calls) == (1, 1, 1)


def test_value_is_served_until_ttl_and_fetched_anew_at_ttl(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=60)
    cache.get("db")
    fetcher.rotate("db")

    clock.advance(59.999)
    assert cache.get("db").secret_string == "db@0"
    clock.advance(0.001)
    assert cache.get("db").secret_string == "db@1"
    assert len(fetcher.calls) == 2


def test_forced_refresh_fetches_anew_while_value_is_fresh(fetcher, clock):
    cache = make_cache(fetcher, clock)
    cache.get("db")
    fetcher.rotate("db")

    assert cache.get("db", refresh=True).secret_string == "db@1"
    assert cache.get("db").secret_string == "db@1"
    assert len(fetcher.calls) == 2


def test_ttl_zero_sends_every_get_upstream_and_keeps_nothing(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=0)

    for _ in range(3):
        cache.get("db")

    assert len(fetcher.calls) == 3
    assert cache.stats().entries == 0


def test_bound_evicts_the_least_recently_read_entry(fetcher, clock):
    cache = make_cache(fetcher, clock, max_entries=2)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # a is now more recent than b

    cache.get("c")

    stats = cache.stats()
    assert (stats.entries, stats.evictions) == (2, 1)
    calls = len(fetcher.calls)
    cache.get("a")
    cache.get("c")
    assert len(fetcher.calls) == calls
    cache.get("b")
    assert len(fetcher.calls) == calls + 1


def test_bound_evicts_in_exact_order_of_use_after_many_hits(fetcher, clock):
    # More hits than the cache notes before it reorders: the order stays exact.
    cache = make_cache(fetcher, clock, max_entries=3)
    for key in ("a", "b", "c"):
        cache.get(key)
    for _ in range(1000):
        cache.get("a")
        cache.lookup("b")
    cache.get("c")
    cache.get("a")  # least recent now: b

    cache.get("d")

    calls = len(fetcher.calls)
    for key in ("a", "c", "d"):
        cache.get(key)
    assert len(fetcher.calls) == calls
    cache.get("b")
    assert fetcher.calls[-1] == ("b", None, None)


def test_stats_count_every_hit_exactly(fetcher, clock):
    cache = make_cache(fetcher, clock)
    cache.get("db")
    for _ in range(1234):
        cache.get("db")
    for _ in range(10):
        cache.lookup("db")

    assert cache.stats().hits == 1244
    cache.clear()
    assert cache.stats().hits == 1244


def test_hits_from_many_threads_are_all_counted(fetcher, clock):
    cache = make_cache(fetcher, clock)
    cache.get("db")

    def read() -> None:
        for _ in range(2000):
            cache.get("db")

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not any(thread.is_alive() for thread in threads)
    assert cache.stats().hits == 8 * 2000


def test_a_value_stops_being_a_hit_at_its_expiry(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=60)
    first = cache.get("db")
    fetcher.rotate("db")

    clock.advance(59.999)
    assert cache.get("db") is first
    clock.advance(0.001)
    assert cache.get("db").secret_string == "db@1"


def test_lookup_hit_answers_only_a_fresh_current_version(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=60)

    assert cache.lookup_hit("db") is None
    assert fetcher.calls == []
    cache.get("db")
    cache.get("db", version_stage="AWSPREVIOUS")
    clock.advance(12.5)
    hit = cache.lookup_hit("db")
    assert hit is not None
    assert (hit.value.secret_string, hit.state, hit.age) == ("db@0", "hit", 12.5)
    clock.advance(47.5)
    assert cache.lookup_hit("db") is None

    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.upstream_calls) == (1, 2, 2)


def test_lookup_hit_leaves_a_key_due_for_refresh_ahead_to_lookup(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=100, refresh_ahead=0.2)
    cache.get("db")

    clock.advance(79)
    assert cache.lookup_hit("db") is not None
    clock.advance(1)
    assert cache.lookup_hit("db") is None
    assert len(fetcher.calls) == 1


def test_lookup_hit_answers_nothing_once_a_revocation_drops_the_value(fetcher, clock):
    cache = make_cache(fetcher, clock, ttl=300)
    cache.get("db")
    fetcher.errors["db"] = SecretNotFoundError("gone", secret_id="db")

    with pytest.raises(SecretNotFoundError):
        cache.get("db", refresh=True)

    assert cache.lookup_hit("db") is None


def test_versions_and_stages_are_cached_apart(fetcher, clock):
    cache = make_cache(fetcher, clock)

    plain = cache.get("db")
    pending = cache.get("db", version_stage="AWSPENDING")
    by_id = cache.get("db", version_id="v0")

    assert plain.secret_string == "db@0"
    assert pending.secret_string == "db@0|None|AWSPENDING"
    assert by_id.secret_string == "db@0|v0|None"
    assert fetcher.calls == [
        ("db", None, None),
        ("db", None, "AWSPENDING"),
        ("db", "v0", None),
    ]


def test_lookup_says_miss_then_hit_with_age(fetcher, clock):
    cache = make_cache(fetcher, clock)

    miss = cache.lookup("db")
    clock.advance(7.5)
    hit = cache.lookup("db")

    assert (miss.state, miss.age) == ("miss", 0.0)
    assert (hit.state, hit.age) == ("hit", 7.5)


def _run_in_threads(count, target):
    results: list[object] = [None] * count
    start = threading.Barrier(count)

    def run(index):
        start.wait()
        try:
            results[index] = target()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def test_concurrent_cold_misses_make_one_upstream_call(fetcher, clock, poll):
    cache = make_cache(fetcher, clock)
    fetcher.gate = threading.Event()

    threads, results = _run_in_threads(32, lambda: cache.get("db"))
    poll(lambda: cache.stats().coalesced == 31)
    fetcher.gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert len(fetcher.calls) == 1
    assert {r.secret_string for r in results} == {"db@0"}


def test_concurrent_forced_refreshes_share_one_call(fetcher, clock, poll):
    cache = make_cache(fetcher, clock)
    cache.get("db")
    fetcher.rotate("db")
    fetcher.gate = threading.Event()

    threads, results = _run_in_threads(16, lambda: cache.get("db", refresh=True))
    poll(lambda: cache.stats().coalesced == 15)
    fetcher.gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert len(fetcher.calls) == 2
    assert {r.secret_string for r in results} == {"db@1"}


def test_slow_miss_on_one_key_does_not_delay_another_key(fetcher, clock):
    cache = make_cache(fetcher, clock)
    cache.get("warm")
    release = threading.Event()

    def slow_for_cold(secret_id):
        if secret_id == "cold":
            fetcher.entered.set()
            assert release.wait(timeout=30)

    fetcher.on_fetch = slow_for_cold
    slow = threading.Thread(target=cache.get, args=("cold",))
    slow.start()
    assert fetcher.entered.wait(timeout=10)

    # Both of these would block forever if the cache held its lock during a fetch.
    assert cache.get("warm").secret_string == "warm@0"
    assert cache.get("other").secret_string == "other@0"
    assert slow.is_alive()

    release.set()
    slow.join(timeout=10)
    assert not slow.is_alive()


def test_error_reaches_every_waiter_and_is_retried_after_backoff(fetcher, clock, poll):
    cache = make_cache(fetcher, clock)
    fetcher.errors["db"] = SecretNotFoundError("no such secret", secret_id="db")
    fetcher.gate = threading.Event()

    threads, results = _run_in_threads(8, lambda: cache.get("db"))
    poll(lambda: cache.stats().coalesced == 7)
    fetcher.gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert all(isinstance(r, SecretNotFoundError) for r in results)
    assert len(fetcher.calls) == 1
    fetcher.gate = None
    del fetcher.errors["db"]
    with pytest.raises(SecretNotFoundError):  # within the backoff: no call
        cache.get("db")
    assert len(fetcher.calls) == 1
    clock.advance(1.0)
    assert cache.get("db").secret_string == "db@0"
    assert len(fetcher.calls) == 2
    assert cache.stats().upstream_errors == 1


def test_unexpected_fetcher_exception_frees_the_key(fetcher, clock):
    cache = make_cache(fetcher, clock)
    fetcher.errors["db"] = RuntimeError("bug in a fetcher")

    with pytest.raises(RuntimeError):
        cache.get("db")
    del fetcher.errors["db"]
    # Not a FetchError: no backoff is recorded, the next read tries again.

    assert cache.get("db").secret_string == "db@0"


def test_transient_error_is_raised_as_its_own_class(fetcher, clock):
    cache = make_cache(fetcher, clock)
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    with pytest.raises(ThrottledError) as caught:
        cache.get("db")

    assert caught.value.transient
    assert not isinstance(caught.value, SecretNotFoundError)


@pytest.mark.parametrize(
    ("secret_id", "version_id", "version_stage"),
    [
        ("", None, None),
        ("a\x00b", None, None),
        ("line\nbreak", None, None),
        ("next\u0085line", None, None),
        ("line\u2028separator", None, None),
        ("x" * 2049, None, None),
        ("é" * 1025, None, None),
        ("db", "", None),
        ("db", None, ""),
        ("db", None, "S" * 257),
        ("db", "v" * 65, None),
    ],
)
def test_impossible_ids_raise_without_upstream_call(
    fetcher, clock, secret_id, version_id, version_stage
):
    cache = make_cache(fetcher, clock)

    with pytest.raises(InvalidRequestError):
        cache.get(secret_id, version_id=version_id, version_stage=version_stage)

    assert fetcher.calls == []
    assert cache.stats().upstream_calls == 0


def test_longest_allowed_id_is_fetched(fetcher, clock):
    cache = make_cache(fetcher, clock)

    cache.get("x" * 2048)

    assert len(fetcher.calls) == 1


def test_binary_secret_keeps_its_bytes(fetcher, clock):
    cache = make_cache(fetcher, clock)
    payload = bytes(range(256))
    fetcher.binary["blob"] = payload

    value = cache.get("blob")

    assert value.secret_binary == payload
    assert value.secret_string is None
    assert value.is_binary


def test_stats_count_evictions_and_entries(fetcher, clock):
    cache = make_cache(fetcher, clock, max_entries=3)

    for name in "abcde":
        cache.get(name)

    stats = cache.stats()
    assert (stats.entries, stats.evictions, stats.misses) == (3, 2, 5)
    assert len(cache) == 3


def test_close_forgets_values(fetcher, clock):
    cache = make_cache(fetcher, clock)
    cache.get("db")

    cache.close()

    assert cache.stats().entries == 0
    cache.get("db")
    assert len(fetcher.calls) == 2


def test_a_wait_that_runs_out_answers_the_stored_value_stale_counted_once(
    fetcher, clock
):
    cache = make_cache(fetcher, clock, ttl=10, max_stale=60, upstream_timeout=0.2)
    cache.get("db")
    clock.advance(11)
    fetcher.gate = threading.Event()
    try:
        found = cache.lookup("db")
        stats = cache.stats()
    finally:
        fetcher.gate.set()

    assert (found.state, found.age) == ("stale", 11)
    assert (stats.timed_out, stats.stale) == (1, 1)
