"""``SecretCache``: the cache policy, independent of any server or backend.

Entries are keyed by ``(secret_id, version_id, version_stage)`` exactly as the caller
asked, so a name and its ARN are two entries. An entry is fresh for ``ttl`` seconds
of the injected monotonic clock; the number of entries is bounded and the least
recently read one is evicted first. Concurrent misses for one key share one call
to the fetcher (single flight), and a forced refresh joins a call already under way
for its key. One lock guards the cache's own state and is never held while the
fetcher runs, so a slow miss on one key delays no other key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from ._config import Config
from ._errors import InvalidRequestError, UpstreamUnavailableError
from ._fetchers import Fetcher
from ._value import SecretValue

__all__ = ["CacheStats", "Lookup", "SecretCache", "check_secret_id"]

logger = logging.getLogger(__name__)

CacheKey = tuple[str, str | None, str | None]

MAX_SECRET_ID_BYTES = 2048
MAX_VERSION_STAGE_CHARS = 256
MAX_VERSION_ID_CHARS = 64


def _has_control_character(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, code="InvalidParameterException")


def check_secret_id(
    secret_id: object,
    version_id: object = None,
    version_stage: object = None,
) -> None:
    """Raise ``InvalidRequestError`` unless the arguments can name a secret version.

    A secret id is 1 to 2048 bytes of UTF-8 without control characters; a version
    id is at most 64 characters and a version stage at most 256, neither empty nor
    holding control characters. The message never repeats the id itself.
    """
    if not isinstance(secret_id, str) or not secret_id:
        raise _invalid("the secret id must be a non-empty string")
    try:
        size = len(secret_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise _invalid("the secret id is not valid Unicode text") from None
    if size > MAX_SECRET_ID_BYTES:
        raise _invalid(
            f"the secret id must be at most {MAX_SECRET_ID_BYTES} bytes, got {size}"
        )
    if _has_control_character(secret_id):
        raise _invalid("the secret id must not hold control characters")
    for label, value, limit in (
        ("version id", version_id, MAX_VERSION_ID_CHARS),
        ("version stage", version_stage, MAX_VERSION_STAGE_CHARS),
    ):
        if value is None:
            continue
        if (
            not isinstance(value, str)
            or not 1 <= len(value) <= limit
            or _has_control_character(value)
        ):
            raise _invalid(
                f"the {label} must be 1 to {limit} characters without control "
                "characters"
            )


@dataclass(frozen=True, slots=True)
class Lookup:
    """A value and how the cache came by it.

    ``state`` is ``"hit"`` when the value came from the cache and ``"miss"`` when
    this call (or one it joined) fetched it; ``age`` is seconds since the fetch.
    """

    value: SecretValue
    state: Literal["hit", "miss"]
    age: float


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made, and the current number of entries.

    ``misses`` counts every lookup not answered from the cache; of those,
    ``coalesced`` joined a call already under way instead of making one.
    """

    hits: int
    misses: int
    upstream_calls: int
    upstream_errors: int
    coalesced: int
    evictions: int
    entries: int


class _Entry:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: SecretValue, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


class _Flight:
    """One call to the fetcher that several callers wait on."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: SecretValue | None = None
        self.error: BaseException | None = None


class SecretCache:
    """A thread-safe cache of secret values in front of a ``Fetcher``.

    ``config`` supplies ``ttl`` (seconds; 0 sends every read to the fetcher and keeps
    nothing) and ``max_entries``. ``clock`` is a monotonic clock in seconds; tests
    pass a fake one.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        config: Config | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._config = config if config is not None else Config()
        self._ttl = float(self._config.ttl)
        self._max_entries = self._config.max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._flights: dict[CacheKey, _Flight] = {}
        self._hits = 0
        self._misses = 0
        self._upstream_calls = 0
        self._upstream_errors = 0
        self._coalesced = 0
        self._evictions = 0

    @property
    def config(self) -> Config:
        """The settings this cache was made with."""
        return self._config

    @property
    def fetcher(self) -> Fetcher:
        """The backend this cache reads from."""
        return self._fetcher

    def get(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> SecretValue:
        """Return the value of a secret, from the cache when it is fresh.

        ``refresh=True`` skips the cached value and fetches anew (sharing a fetch
        already under way for the same key). Raises ``FetchError`` subclasses.
        """
        return self.lookup(
            secret_id,
            version_id=version_id,
            version_stage=version_stage,
            refresh=refresh,
        ).value

    def lookup(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> Lookup:
        """Like ``get``, but also say whether the value was a hit and how old it is."""
        key: CacheKey = (secret_id, version_id, version_stage)
        with self._lock:
            if not refresh:
                entry = self._entries.get(key)
                if entry is not None:
                    now = self._clock()
                    if now < entry.expires_at:
                        self._entries.move_to_end(key)
                        self._hits += 1
                        return Lookup(entry.value, "hit", now - entry.value.fetched_at)
            self._misses += 1
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                self._coalesced += 1

        if leader:
            return self._fetch(key, flight)
        logger.debug("waiting on the fetch under way for %s", secret_id)
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.value is not None  # set whenever error is not
        return Lookup(flight.value, "miss", self._clock() - flight.value.fetched_at)

    def _fetch(self, key: CacheKey, flight: _Flight) -> Lookup:
        secret_id, version_id, version_stage = key
        called = False
        try:
            check_secret_id(secret_id, version_id, version_stage)
            logger.debug("miss for %s, fetching", secret_id)
            called = True
            value = self._fetcher.fetch(
                secret_id, version_id=version_id, version_stage=version_stage
            )
            now = self._clock()
            value = replace(value, fetched_at=now)
        except BaseException as exc:
            with self._lock:
                self._flights.pop(key, None)
                self._upstream_calls += called
                self._upstream_errors += called
            if isinstance(exc, Exception):
                flight.error = exc
            else:
                flight.error = UpstreamUnavailableError(
                    "the fetch was interrupted", secret_id=secret_id
                )
            flight.done.set()
            raise

        with self._lock:
            self._flights.pop(key, None)
            self._upstream_calls += 1
            if self._ttl > 0:
                self._entries[key] = _Entry(value, now + self._ttl)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
                    self._evictions += 1
        flight.value = value
        flight.done.set()
        return Lookup(value, "miss", 0.0)

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                upstream_calls=self._upstream_calls,
                upstream_errors=self._upstream_errors,
                coalesced=self._coalesced,
                evictions=self._evictions,
                entries=len(self._entries),
            )

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every cached value (fetches under way still finish)."""
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Forget every value and close the fetcher's connections."""
        self.clear()
        close = getattr(self._fetcher, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return (
            f"SecretCache(ttl={self._config.ttl}, "
            f"max_entries={self._max_entries}, entries={len(self._entries)})"
        )
