"""What ``/metrics`` answers: the app's counters in the Prometheus text format.

Each app has a ``CollectorRegistry`` of its own (never prometheus_client's global
one), so several apps in one process keep apart. It holds:

- counters this module keeps for the life of the process: requests by route
  template, method and status; calls to AWS by operation, and their errors by
  operation and error code (told by the fetchers' observer hook, see
  ``cachecore.FetchObserver``); a histogram of their latency by operation;
- the cache's own counters and its number of entries, read from
  ``SecretCache.stats()`` at each scrape by ``CacheCollector``;
- with ``Config.metrics_names``, lookups by the name of the secret or parameter,
  for at most ``min(max_entries, MAX_NAMED)`` names; lookups of names beyond
  those are counted without a name. Without it, no label value is ever a name.

Every label has a bounded set of values: the routes and methods are fixed lists,
and error codes beyond ``MAX_ERROR_CODES`` distinct ones are counted as
``other``.

Requests are counted on every answer, so their count takes no lock: each series
has a ``_Tally`` that answers add to, folded into the counter at each scrape.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from cachecore import Config, SecretCache

__all__ = [
    "CONTENT_TYPE",
    "MAX_ERROR_CODES",
    "MAX_NAMED",
    "UPSTREAM_BUCKETS",
    "CacheCollector",
    "Metrics",
]

#: The text format 0.0.4, which every Prometheus reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: The most names ``CACHECORE_METRICS_NAMES`` labels, whatever ``max_entries`` is.
MAX_NAMED = 1000
#: The most distinct error codes labelled; any further code is ``other``.
MAX_ERROR_CODES = 64
#: Seconds: a hit on a warm connection is ~10 ms, a retried timeout ~15 s.
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
)
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


class CacheCollector(Collector):
    """The counters of a ``SecretCache``, read when Prometheus scrapes."""

    def __init__(self, cache: SecretCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        """One family per counter of ``CacheStats``, and the entries."""
        stats = self._cache.stats()
        for name, value, meaning in (
            ("hits", stats.hits, "Lookups answered from the cache without a call."),
            ("misses", stats.misses, "Lookups that needed a call to AWS."),
            (
                "coalesced",
                stats.coalesced,
                "Misses that joined a call to AWS already under way.",
            ),
            (
                "stale",
                stats.stale,
                "Lookups answered with a stored value marked stale: AWS failed.",
            ),
            (
                "backoff_errors",
                stats.backoff_errors,
                "Lookups answered with the stored error of a key backing off.",
            ),
            ("evictions", stats.evictions, "Entries evicted to stay within size."),
            (
                "timed_out",
                stats.timed_out,
                "Lookups that gave up waiting for AWS (answered stale, or 504).",
            ),
        ):
            yield CounterMetricFamily(f"cachecore_cache_{name}", meaning, value=value)
        yield GaugeMetricFamily(
            "cachecore_cache_entries",
            "Keys the cache holds: values, and the failures it remembers.",
            value=stats.entries,
        )
        yield GaugeMetricFamily(
            "cachecore_cache_max_entries",
            "The most keys the cache holds (CACHECORE_MAX_ENTRIES).",
            value=self._cache.config.max_entries,
        )


class _Tally:
    """A count that threads add to without a lock, folded into a counter's child.

    ``add`` takes a number from an ``itertools.count``; ``fold`` reads the count
    by taking one too, and adds to the child what was added since the last fold.
    """

    __slots__ = ("_child", "_counter", "_folded", "_reads", "add")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self._counter = itertools.count()
        self.add: Callable[[], int] = self._counter.__next__
        self._reads = 0
        self._folded = 0

    def fold(self) -> None:
        """Bring the child up to date; one caller at a time."""
        added = next(self._counter) - self._reads
        self._reads += 1
        if added > self._folded:
            self._child.inc(added - self._folded)
            self._folded = added


class Metrics:
    """The registry of one app, and the counters the app and its fetchers feed."""

    def __init__(self, cache: SecretCache, config: Config) -> None:
        self.registry = registry = CollectorRegistry()
        self._requests = Counter(
            "cachecore_http_requests",
            "HTTP requests answered by the app, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
        )
        self._calls = Counter(
            "cachecore_upstream_calls",
            "Calls to AWS (each may hold botocore's retries), by operation.",
            ("operation",),
            registry=registry,
        )
        self._errors = Counter(
            "cachecore_upstream_errors",
            "Calls to AWS that failed, by operation and error code.",
            ("operation", "error"),
            registry=registry,
        )
        self._latency = Histogram(
            "cachecore_upstream_duration_seconds",
            "Time of each call to AWS, retries included, by operation.",
            ("operation",),
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        registry.register(CacheCollector(cache))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._lock = threading.Lock()
        #: A tally for each series of ``_requests`` in use, made with its child on
        #: first use (so series keep the order of their first answer). Bounded as
        #: the labels are.
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self._codes: set[str] = set()
        self._named: set[tuple[str, str]] = set()
        self._max_named = min(config.max_entries, MAX_NAMED)
        self._lookups: Counter | None = None
        self._unnamed: Counter | None = None
        if config.metrics_names:
            self._lookups = Counter(
                "cachecore_lookups_by_name",
                "Lookups by kind (secret or parameter), name and result (hit, "
                "miss, stale or error); CACHECORE_METRICS_NAMES=true only.",
                ("kind", "name", "result"),
                registry=registry,
            )
            self._unnamed = Counter(
                "cachecore_lookups_unnamed",
                "Lookups of names beyond the most that are labelled, by kind and "
                "result; CACHECORE_METRICS_NAMES=true only.",
                ("kind", "result"),
                registry=registry,
            )

    def observe_fetch(self, operation: str, seconds: float, code: str | None) -> None:
        """Count one call to AWS: a ``cachecore.FetchObserver``."""
        self._calls.labels(operation).inc()
        self._latency.labels(operation).observe(seconds)
        if code is not None:
            self._errors.labels(operation, self._code_label(code)).inc()

    def _code_label(self, code: str) -> str:
        if not _CODE.fullmatch(code):
            return "other"
        with self._lock:
            if code not in self._codes and len(self._codes) >= MAX_ERROR_CODES:
                return "other"
            self._codes.add(code)
        return code

    def count_request(self, route: str, method: str, status: int) -> None:
        """Count one answer of the app; ``route`` is a template, never a path."""
        self._tally(route, method, status).add()

    def _tally(self, route: str, method: str, status: int) -> _Tally:
        """The tally of answers ``status`` to ``method`` on ``route``, made once."""
        method = method if method in _METHODS else "other"
        tally = self._tallies.get((route, method, status))
        if tally is None:
            with self._lock:
                tally = self._tallies.get((route, method, status))
                if tally is None:
                    child = self._requests.labels(route, method, str(status))
                    tally = self._tallies[(route, method, status)] = _Tally(child)
        return tally

    def count_hit(self, route: str, method: str, name: str) -> None:
        """Count a hit of secret ``name`` answered 200 on ``route``.

        The same counts as ``count_lookup("secret", name, "hit")`` and
        ``count_request(route, method, 200)``, in one call for the hit lane.
        """
        self.count_lookup("secret", name, "hit")
        self.count_request(route, method, 200)

    def hit_counter(self, route: str, method: str, name: str) -> Callable[[], object]:
        """A call that counts what ``count_hit(route, method, name)`` counts.

        Where names are not counted, it is the request tally's own ``add``, which
        takes no lock; the hit lane keeps one for each query it remembers.
        """
        if self._lookups is not None:
            return functools.partial(self.count_hit, route, method, name)
        return self._tally(route, method, 200).add

    def count_lookup(self, kind: str, name: str, result: str) -> None:
        """Count one lookup by name, when names are counted at all."""
        if self._lookups is None or self._unnamed is None:
            return
        with self._lock:
            known = (kind, name) in self._named
            if not known and len(self._named) < self._max_named:
                self._named.add((kind, name))
                known = True
        if known:
            self._lookups.labels(kind, name, result).inc()
        else:
            self._unnamed.labels(kind, result).inc()

    def exposition(self) -> bytes:
        """Everything in the registry, in the text format 0.0.4."""
        with self._lock:
            for tally in self._tallies.values():
                tally.fold()
        return generate_latest(self.registry)
