"""``SecretCache``: the cache policy, independent of any server or backend.

Entries are keyed by ``(secret_id, version_id, version_stage)`` exactly as the caller
asked, so a name and its ARN are two entries. Each entry holds the last value and
the state of the key's failures:

- a value is fresh for ``ttl`` seconds (``parameter_ttl`` for an SSM parameter)
  of the injected monotonic clock, shortened at random by up to ``ttl_jitter`` so
  that a fleet started together does not refetch together; the number of entries
  is bounded and the least recently used is evicted first;
- concurrent misses for one key share one call to the fetcher (single flight); a
  forced refresh joins a call under way, and reaches the fetcher at most once per
  ``refresh_min_interval`` per key;
- after a failure the key backs off (``backoff_base_seconds * backoff_growth **
  (n - 1)``, capped): until then callers get the stored error, or the stored value,
  at once and without a call;
- a transient failure (throttling, 5xx, timeout, connection) serves the stored
  value marked ``stale``, up to ``max_stale`` seconds past its expiry; a permanent
  one (denied, not found, decryption, invalid request such as a secret scheduled
  for deletion) drops the stored value and is raised, so a revocation is never
  masked.

One lock guards the cache's own state and is never held while the fetcher runs, so
a slow miss on one key delays no other key. Each call to the fetcher that a lookup
makes runs in a thread of its own, and a caller waits for it at most
``upstream_timeout`` seconds in all (botocore's own retries included): then it
gets the stored value marked stale, if one is within ``max_stale``, or
``UpstreamTimeoutError``, while the call goes on and its outcome is recorded when
it ends. (``prefetch`` calls the fetcher in its caller's thread, and checks its own
deadline between calls.)

A fresh hit on a secret's current version takes no lock: ``get`` and ``lookup``
read an immutable record of the value and the end of its freshness from a dict
that only the locked code writes. Such a hit appends its key to a list of
touches, which the locked code applies to the recency order (and counts as hits)
before it reorders or evicts anything or reads the counters: the eviction order
stays exactly that of least recent use, and ``stats()`` stays exact.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, NoReturn, TypeVar, cast

from ._config import Config
from ._errors import (
    AccessDeniedError,
    ConfigError,
    FetchError,
    InvalidRequestError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ._fetchers import Fetcher, ParameterFetcher
from ._value import ParameterValue, SecretValue

__all__ = [
    "CacheStats",
    "Lookup",
    "SecretCache",
    "check_parameter",
    "check_secret_id",
]

logger = logging.getLogger(__name__)

#: ("secret", id, version_id, version_stage) or ("parameter", name, selector, "decrypt"
#: or None).
CacheKey = tuple[str, str, str | None, str | None]
Value = TypeVar("Value", SecretValue, ParameterValue)

MAX_SECRET_ID_BYTES = 2048
MAX_VERSION_STAGE_CHARS = 256
MAX_VERSION_ID_CHARS = 64
PREFETCH_BATCH = 20
_MAX_BACKOFF_EXPONENT = 64
_NEVER = -math.inf
#: A lock-free hit applies the touches once this many are waiting, so that the
#: list stays short even when nothing else takes the lock.
_MAX_TOUCHES = 256

State = Literal["hit", "miss", "stale"]


def _has_control_character(text: str) -> bool:
    # C0, DEL and C1 controls, and the two Unicode line and paragraph separators:
    # none can be in a name, and each could break a log line apart.
    return any(ord(c) < 32 or 127 <= ord(c) <= 159 or c in "\u2028\u2029" for c in text)


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


MAX_PARAMETER_LABEL_CHARS = 100
#: 18 digits, as the sidecar reads from a query: a version is a 64-bit number.
MAX_PARAMETER_VERSION = 10**18 - 1


def check_parameter(name: object, version: object = None, label: object = None) -> None:
    """Raise ``InvalidRequestError`` unless the arguments can name a parameter.

    The name follows the rules of a secret id; ``version`` is an integer from 1
    to ``MAX_PARAMETER_VERSION`` (18 digits) and ``label`` 1 to 100 characters
    without control characters, not both.
    """
    try:
        check_secret_id(name)
    except InvalidRequestError as exc:
        raise _invalid(exc.message.replace("secret id", "parameter name")) from None
    if version is not None and label is not None:
        raise _invalid("give a parameter version or a label, not both")
    if version is not None and (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= MAX_PARAMETER_VERSION
    ):
        raise _invalid(
            "the parameter version must be a positive integer of at most 18 digits"
        )
    if label is not None and (
        not isinstance(label, str)
        or not 1 <= len(label) <= MAX_PARAMETER_LABEL_CHARS
        or _has_control_character(label)
    ):
        raise _invalid(
            f"the parameter label must be 1 to {MAX_PARAMETER_LABEL_CHARS} "
            "characters without control characters"
        )


@dataclass(frozen=True, slots=True)
class Lookup(Generic[Value]):
    """A value and how the cache came by it.

    ``state`` is ``"hit"`` when the value came from the cache, ``"miss"`` when this
    call (or one it joined) fetched it, and ``"stale"`` when the backend failed
    transiently and the stored value was served instead; ``age`` is seconds since
    the value was fetched.
    """

    value: Value
    state: State
    age: float


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made, and the current number of entries.

    ``hits`` counts lookups answered from the cache without a call, ``misses``
    those that needed the fetcher (of which ``coalesced`` joined a call already
    under way), ``backoff_errors`` those answered with the stored error of a key
    that is backing off. ``stale`` counts answers marked stale, whether after a
    failed call or during a backoff. ``timed_out`` counts lookups that stopped
    waiting for a call after ``upstream_timeout`` seconds (answered stale, or
    with ``UpstreamTimeoutError``).
    """

    hits: int
    misses: int
    stale: int
    upstream_calls: int
    upstream_errors: int
    coalesced: int
    backoff_errors: int
    evictions: int
    entries: int
    timed_out: int = 0


#: Seconds a call may run before a caller with a stored value stops joining it.
STALE_AFTER = 1.0


class _Entry:
    """What the cache knows of one key: its last value and its failures."""

    __slots__ = (
        "ahead_at",
        "error",
        "expires_at",
        "failures",
        "refreshed_at",
        "retry_at",
        "updated",
        "value",
    )

    def __init__(self) -> None:
        self.value: Any = None
        self.expires_at = _NEVER
        self.ahead_at = _NEVER  # from then on a read refreshes ahead, if enabled
        self.error: FetchError | None = None
        self.failures = 0
        self.retry_at = _NEVER
        self.refreshed_at = _NEVER  # the last call made for a forced refresh
        self.updated = 0  # the cache's sequence number when an outcome was recorded


#: What a lock-free hit reads: (fresh until, value, key). Replaced, never changed.
_Fresh = tuple[float, SecretValue, CacheKey]


class _Flight:
    """One call to the fetcher that several callers wait on."""

    __slots__ = ("done", "error", "forced", "lookup", "started")

    def __init__(self, forced: bool, started: float = 0.0) -> None:
        self.done = threading.Event()
        self.forced = forced
        self.started = started
        self.lookup: Lookup[Any] | None = None
        self.error: BaseException | None = None


def _raise(error: BaseException) -> NoReturn:
    # A stored error reaches many callers, in many threads: each gets its own copy,
    # so that no caller's traceback or context ends up on another's exception.
    fresh = copy.copy(error)
    fresh.__cause__ = error.__cause__
    raise fresh.with_traceback(None)


class SecretCache:
    """A thread-safe cache of secret values in front of a ``Fetcher``.

    ``config`` supplies the policy (see ``Config``). ``clock`` is a monotonic clock
    in seconds and ``random`` a source of floats in [0, 1) for the TTL jitter;
    tests pass fakes of both.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        config: Config | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
        parameter_fetcher: ParameterFetcher | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._parameter_fetcher = parameter_fetcher
        self._config = config = config if config is not None else Config()
        self._ttl = float(config.ttl)
        self._parameter_ttl = float(
            config.ttl if config.parameter_ttl is None else config.parameter_ttl
        )
        self._jitter = config.ttl_jitter
        self._ahead = config.refresh_ahead > 0
        self._max_entries = config.max_entries
        self._clock = clock
        self._random = random
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._flights: dict[CacheKey, _Flight] = {}
        self._background: ThreadPoolExecutor | None = None
        self._batch_denied = False
        self._closed = False
        self._sequence = 0  # counts recorded outcomes, to order them
        self._hits = 0
        self._misses = 0
        self._stale = 0
        self._upstream_calls = 0
        self._upstream_errors = 0
        self._coalesced = 0
        self._backoff_errors = 0
        self._evictions = 0
        self._timed_out = 0
        #: Current versions of secrets that a hit may answer without the lock, by
        #: secret id; written with the lock held only (see ``_publish``).
        self._fresh: dict[str, _Fresh] = {}
        #: Keys read by lock-free hits, one per hit, since the recency order and
        #: ``_hits`` last took them in (see ``_apply_touches``).
        self._touches: list[CacheKey] = []
        #: How long a caller waits for a call to the fetcher, at most.
        self._wait = config.upstream_timeout
        #: A caller that finds a call running this long already, and has a value
        #: to fall back on, does not wait for it.
        self._stale_after = min(STALE_AFTER, self._wait)

    @property
    def config(self) -> Config:
        """The settings this cache was made with."""
        return self._config

    @property
    def fetcher(self) -> Fetcher:
        """The backend this cache reads from."""
        return self._fetcher

    @property
    def parameter_fetcher(self) -> ParameterFetcher | None:
        """The backend of ``get_parameter``, if the cache was made with one."""
        return self._parameter_fetcher

    def get(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> SecretValue:
        """Return the value of a secret, from the cache when it is fresh.

        ``refresh=True`` asks the backend anew (within ``refresh_min_interval`` of
        the last forced refresh of the key, the value that one fetched is
        returned). Raises ``FetchError`` subclasses.
        """
        if version_id is None and version_stage is None and not refresh:
            # fresh_hit, inlined: the in-process hit is the path measured against
            # a dict lookup, and calling it (a call and a tuple) made get about a
            # third slower here (380 ns against 283 ns).
            fresh = self._fresh.get(secret_id)
            if fresh is not None and self._clock() < fresh[0]:
                touches = self._touches
                touches.append(fresh[2])
                if len(touches) > _MAX_TOUCHES:
                    self._take_touches()
                return fresh[1]
        key: CacheKey = ("secret", secret_id, version_id, version_stage)
        return cast(SecretValue, self._lookup(key, refresh).value)

    def get_secret_string(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> str:
        """The secret as text, as ``SecretReader`` defines it (``SecretValue.text``)."""
        return self.get(
            secret_id,
            version_id=version_id,
            version_stage=version_stage,
            refresh=refresh,
        ).text

    def get_secret_json(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> Any:
        """The secret parsed as JSON; a fresh object on every call."""
        return self.get(
            secret_id,
            version_id=version_id,
            version_stage=version_stage,
            refresh=refresh,
        ).json()

    def get_secret_binary(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> bytes:
        """The secret as bytes (``SecretValue.data``)."""
        return self.get(
            secret_id,
            version_id=version_id,
            version_stage=version_stage,
            refresh=refresh,
        ).data

    def lookup(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> Lookup[SecretValue]:
        """Like ``get``, but also say how the value was come by and how old it is."""
        if version_id is None and version_stage is None and not refresh:
            hit = self.lookup_hit(secret_id)
            if hit is not None:
                return hit
        key: CacheKey = ("secret", secret_id, version_id, version_stage)
        return cast(Lookup[SecretValue], self._lookup(key, refresh))

    def lookup_hit(self, secret_id: str) -> Lookup[SecretValue] | None:
        """The lookup of the current version of a secret if it is a fresh hit.

        ``None`` where ``lookup`` would have more to do than answer from the cache
        (a miss, an expired or stale value, a key backing off, or one due for
        refresh-ahead): then nothing is called, counted or reordered. A hit is
        counted, and makes the key the most recently used, as ``lookup``'s is.
        """
        found = self.fresh_hit(secret_id)
        if found is None:
            return None
        return Lookup(found[0], "hit", found[1])

    def fresh_hit(self, secret_id: str) -> tuple[SecretValue, float] | None:
        """``lookup_hit`` as a plain pair: the value and its age in seconds."""
        fresh = self._fresh.get(secret_id)
        if fresh is None:
            return None
        now = self._clock()
        if now >= fresh[0]:
            return None
        touches = self._touches
        touches.append(fresh[2])
        if len(touches) > _MAX_TOUCHES:
            self._take_touches()
        value = fresh[1]
        return value, now - value.fetched_at

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        refresh: bool = False,
    ) -> str:
        """The value of an SSM parameter, through the parameter fetcher.

        Parameters are cached under the same policy as secrets. ``version`` or
        ``label`` selects one version (not both); ``refresh=True`` asks Parameter
        Store anew (the HTTP API has no such flag, so ``SecretReader`` leaves it
        out). ``lookup_parameter`` gives the whole ``ParameterValue``. Raises
        ``ConfigError`` when the cache was made without a ``parameter_fetcher``.
        """
        return self.lookup_parameter(
            name,
            version=version,
            label=label,
            with_decryption=with_decryption,
            refresh=refresh,
        ).value.value

    def lookup_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        refresh: bool = False,
    ) -> Lookup[ParameterValue]:
        """Like ``get_parameter``, but also say how the value was come by."""
        if self._parameter_fetcher is None:
            raise ConfigError("this cache was made without a parameter_fetcher")
        # Checked before the lookup, not only on a miss: a cached version must not
        # answer a request that also names a label.
        check_parameter(name, version, label)
        selector = str(version) if version is not None else label
        key: CacheKey = (
            "parameter",
            name,
            selector,
            "decrypt" if with_decryption else None,
        )
        return cast(
            Lookup[ParameterValue],
            self._lookup(key, refresh),
        )

    def _lookup(self, key: CacheKey, refresh: bool) -> Lookup[Any]:
        with self._lock:
            now = self._clock()
            entry = self._entries.get(key)
            if entry is not None:
                answer = self._answer_from_entry(key, entry, now, refresh)
                if answer is not None:
                    return answer
                if entry.error is not None and (
                    now < entry.retry_at or self._capped(entry, now, refresh)
                ):
                    self._touch(key)
                    self._backoff_errors += 1
                    error: BaseException = entry.error
                    _raise(error)
            if key[0] == "secret":  # parameters are checked before the lookup
                check_secret_id(key[1], key[2], key[3])
            self._misses += 1
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(forced=refresh, started=now)
            else:
                self._coalesced += 1
                flight.forced = flight.forced or refresh
                if now - flight.started >= self._stale_after:
                    # A call this slow has already kept its first callers
                    # waiting: with a value to fall back on, answer at once.
                    early = self._stale_now(key, now)
                    if early is not None:
                        return early

        if leader:
            self._start(key, flight)
        else:
            logger.debug("waiting on the fetch under way for %s", key[1])
        if not flight.done.wait(self._wait):
            return self._too_late(key)
        if flight.error is not None:
            _raise(flight.error)
        lookup = flight.lookup
        assert lookup is not None  # set whenever error is not
        if lookup.state == "stale":
            with self._lock:
                self._stale += 1
        return lookup

    def _answer_from_entry(
        self, key: CacheKey, entry: _Entry, now: float, refresh: bool
    ) -> Lookup[Any] | None:
        """Answer from what the entry holds, or ``None`` when the fetcher must run.

        Called with the lock held.
        """
        value = entry.value
        if value is None:
            return None
        age = now - value.fetched_at
        capped = refresh and self._capped(entry, now, refresh)
        if now < entry.expires_at and (not refresh or capped):
            self._touch(key)
            self._hits += 1
            if self._ahead and not refresh and now >= entry.ahead_at:
                self._refresh_ahead(key, entry, now)
            return Lookup(value, "hit", age)
        failing = now < entry.retry_at or (capped and entry.error is not None)
        if failing and now < entry.expires_at + self._config.max_stale:
            self._touch(key)
            self._stale += 1
            return Lookup(value, "stale", age)
        return None

    def _touch(self, key: CacheKey) -> None:
        """Make ``key`` the most recently used (lock held)."""
        if self._touches:
            self._apply_touches()
        self._entries.move_to_end(key)

    def _apply_touches(self) -> None:
        """Take the lock-free hits into the recency order and the count (lock held).

        Hits append while this runs: only the touches it saw are removed. A key
        evicted since its hit is skipped.
        """
        touches = self._touches
        seen = len(touches)
        batch = touches[:seen]
        del touches[:seen]
        self._hits += seen
        entries = self._entries
        # Each key once, at its last touch, in the order of those last touches.
        for key in reversed(dict.fromkeys(reversed(batch))):
            if key in entries:
                entries.move_to_end(key)

    def _take_touches(self) -> None:
        with self._lock:
            self._apply_touches()

    def _publish(self, key: CacheKey, entry: _Entry | None) -> None:
        """Offer the entry's value to lock-free hits, or withdraw it (lock held).

        Only a secret's current version (no version id or stage) is offered. Its
        hits end at the entry's expiry, or where refresh-ahead starts (from then
        on the locked path answers, and starts the refresh).
        """
        if key[0] != "secret" or key[2] is not None or key[3] is not None:
            return
        if entry is None or entry.value is None:
            self._fresh.pop(key[1], None)
            return
        until = entry.ahead_at if self._ahead else entry.expires_at
        self._fresh[key[1]] = (until, entry.value, key)

    def _capped(self, entry: _Entry, now: float, refresh: bool) -> bool:
        """Whether a forced refresh must not call: one called too recently."""
        interval = self._config.refresh_min_interval
        return refresh and now - entry.refreshed_at < interval

    def _refresh_ahead(self, key: CacheKey, entry: _Entry, now: float) -> None:
        """Start a background fetch of a key read late in its TTL (lock held)."""
        if self._closed or key in self._flights or now < entry.retry_at:
            return
        flight = self._flights[key] = _Flight(forced=False, started=now)
        if self._background is None:
            self._background = ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="cachecore-refresh-ahead"
            )
        logger.debug("refreshing %s ahead of its expiry", key[1])
        self._background.submit(self._fetch_quietly, key, flight)

    def _start(self, key: CacheKey, flight: _Flight) -> None:
        """Run a flight's call in a thread of its own.

        The thread is a daemon: a call that hangs must keep neither a caller past
        its wait nor the process from exiting.
        """
        thread = threading.Thread(
            target=self._fetch_quietly,
            args=(key, flight),
            name="cachecore-fetch",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: call here, unbounded
            self._fetch_quietly(key, flight)

    def _stale_now(self, key: CacheKey, now: float) -> Lookup[Any] | None:
        """The stored value marked stale, if within ``max_stale`` (lock held)."""
        entry = self._entries.get(key)
        if entry is None or entry.value is None:
            return None
        if now >= entry.expires_at + self._config.max_stale:
            return None
        self._stale += 1
        return Lookup(entry.value, "stale", now - entry.value.fetched_at)

    def _too_late(self, key: CacheKey) -> Lookup[Any]:
        """The answer to a caller whose wait ran out while the call goes on.

        The stored value if it is within ``max_stale`` of its expiry, marked
        stale; otherwise ``UpstreamTimeoutError``. The call's own outcome is
        recorded when it ends.
        """
        with self._lock:
            self._timed_out += 1
            early = self._stale_now(key, self._clock())
        if early is not None:
            return early
        raise UpstreamTimeoutError(
            f"no answer from AWS within {self._wait:g}s "
            "(CACHECORE_UPSTREAM_TIMEOUT); the call goes on in the background",
            secret_id=key[1],
        )

    def _fetch_quietly(self, key: CacheKey, flight: _Flight) -> None:
        try:
            self._fetch(key, flight)
        except BaseException:  # already recorded in the entry and given to waiters
            logger.debug("the fetch of %s failed", key[1])

    def _call(self, key: CacheKey) -> SecretValue | ParameterValue:
        """Ask the right fetcher for the value of a key (no lock held)."""
        kind, name, first, second = key
        if kind == "secret":
            return self._fetcher.fetch(name, version_id=first, version_stage=second)
        assert self._parameter_fetcher is not None  # lookup_parameter checked it
        return self._parameter_fetcher.fetch_parameter(
            name, selector=first, with_decryption=second is not None
        )

    def _fetch(self, key: CacheKey, flight: _Flight) -> None:
        """Make the call of a flight and record its outcome in it.

        Whatever happens, even an interrupt, the flight is removed and its waiters
        are woken: no key is ever left waiting on a call that ended.
        """
        name = key[1]
        logger.debug("fetching %s", name)
        try:
            try:
                value = self._call(key)
                if not isinstance(value, SecretValue | ParameterValue):
                    raise UpstreamUnavailableError(
                        f"the fetcher answered {type(value).__name__}, not a value",
                        secret_id=name,
                    )
            except FetchError as exc:
                with self._lock:
                    self._upstream_calls += 1
                    self._upstream_errors += 1
                    stale = self._record_failure(key, exc, self._clock(), flight.forced)
                if stale is None:
                    flight.error = exc
                    raise
                flight.lookup = stale
                return
            with self._lock:
                self._upstream_calls += 1
                now = self._clock()
                value = replace(value, fetched_at=now)
                self._store(key, value, now, forced=flight.forced)
            flight.lookup = Lookup(value, "miss", 0.0)
        except BaseException as exc:
            if flight.error is None and flight.lookup is None:
                flight.error = (
                    exc
                    if isinstance(exc, Exception)
                    else UpstreamUnavailableError(
                        "the fetch was interrupted", secret_id=name
                    )
                )
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()

    def _store(
        self,
        key: CacheKey,
        value: SecretValue | ParameterValue,
        now: float,
        forced: bool,
    ) -> None:
        """Keep a fetched value and clear the key's failures (lock held)."""
        full_ttl = self._parameter_ttl if key[0] == "parameter" else self._ttl
        if full_ttl <= 0:
            self._entries.pop(key, None)
            self._publish(key, None)
            return
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        ttl = full_ttl * (1.0 - self._jitter * self._random())
        entry.value = value
        entry.expires_at = now + ttl
        entry.ahead_at = now + ttl * (1.0 - self._config.refresh_ahead)
        entry.error = None
        entry.failures = 0
        entry.retry_at = _NEVER
        # Only a forced refresh starts the interval; an ordinary fetch ends it, so
        # that a refresh after an ordinary read always calls.
        entry.refreshed_at = now if forced else _NEVER
        self._sequence += 1
        entry.updated = self._sequence
        self._publish(key, entry)
        self._touch(key)
        self._evict()

    def _record_failure(
        self, key: CacheKey, error: FetchError, now: float, forced: bool
    ) -> Lookup[Any] | None:
        """Start or lengthen the key's backoff; the stale answer, if any (lock held)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.failures = min(entry.failures + 1, _MAX_BACKOFF_EXPONENT)
        entry.error = error
        entry.retry_at = now + self.backoff(entry.failures)
        self._sequence += 1
        entry.updated = self._sequence
        if forced:
            entry.refreshed_at = now
        self._touch(key)
        self._evict()
        value = entry.value
        if not error.transient:
            if value is not None:
                logger.info("%s: %s, dropping the cached value", key[1], error.code)
            entry.value = None
            entry.expires_at = _NEVER
            self._publish(key, None)
            return None
        if value is None or now >= entry.expires_at + self._config.max_stale:
            return None
        logger.warning(
            "%s: %s, serving the cached value %.0fs old",
            key[1],
            error.code,
            now - value.fetched_at,
        )
        return Lookup(value, "stale", now - value.fetched_at)

    def backoff(self, failures: int) -> float:
        """Seconds a key waits after ``failures`` failures in a row."""
        config = self._config
        exponent = min(max(failures, 1), _MAX_BACKOFF_EXPONENT) - 1
        delay = config.backoff_base_seconds * config.backoff_growth**exponent
        return min(delay, config.backoff_max_seconds)

    def _evict(self) -> None:
        # Called after _touch, which took in the lock-free hits' touches.
        while len(self._entries) > self._max_entries:
            key, _ = self._entries.popitem(last=False)
            self._publish(key, None)
            self._evictions += 1

    def prefetch(
        self, secret_ids: Iterable[str], *, timeout: float = 10.0
    ) -> dict[str, FetchError]:
        """Fetch the current value of each id now; return the ids that failed.

        Uses the fetcher's ``fetch_many`` (BatchGetSecretValue, 20 ids a call) when
        it has one, and single fetches otherwise, where the batch call is denied,
        or for ids a batch did not answer. No call starts after ``timeout``
        seconds: the ids not reached by then fail with ``UpstreamTimeoutError``.
        An id that fails does not fail others, and its failure is recorded as a
        read's would be. A value or failure that a read recorded while the
        prefetch was under way is never overwritten by the prefetch's older one.
        """
        failed: dict[str, FetchError] = {}
        pending: list[str] = []
        for secret_id in dict.fromkeys(secret_ids):
            try:
                check_secret_id(secret_id)
            except InvalidRequestError as exc:
                failed[secret_id] = exc
            else:
                pending.append(secret_id)

        deadline = self._clock() + timeout
        late = UpstreamTimeoutError(
            f"prefetch ran out of its {timeout:g}s before reaching this id"
        )
        for start in range(0, len(pending), PREFETCH_BATCH):
            chunk = pending[start : start + PREFETCH_BATCH]
            with self._lock:
                started = self._sequence
            if self._clock() >= deadline:
                failed.update(dict.fromkeys(pending[start:], late))
                break
            values, errors = self._fetch_chunk(chunk, deadline, late)
            failed.update(errors)
            called = {k: e for k, e in errors.items() if e is not late}
            self._keep_prefetched(values, called, started)
        logger.info(
            "prefetched %d of %d secrets", len(pending) - len(failed), len(pending)
        )
        return failed

    def _keep_prefetched(
        self,
        values: dict[str, SecretValue],
        errors: dict[str, FetchError],
        started: int,
    ) -> None:
        with self._lock:
            now = self._clock()
            for secret_id, value in values.items():
                key: CacheKey = ("secret", secret_id, None, None)
                if self._newer_than(key, started):
                    continue
                self._store(key, replace(value, fetched_at=now), now, forced=False)
            for secret_id, error in errors.items():
                key = ("secret", secret_id, None, None)
                if not self._newer_than(key, started):
                    self._upstream_errors += 1
                    self._record_failure(key, error, now, forced=False)

    def _newer_than(self, key: CacheKey, started: int) -> bool:
        """Whether a read recorded anything for ``key`` since ``started``."""
        entry = self._entries.get(key)
        in_flight = key in self._flights
        return in_flight or (entry is not None and entry.updated > started)

    def _fetch_chunk(
        self, chunk: list[str], deadline: float, late: UpstreamTimeoutError
    ) -> tuple[dict[str, SecretValue], dict[str, FetchError]]:
        values: dict[str, SecretValue] = {}
        errors: dict[str, FetchError] = {}
        fetch_many = getattr(self._fetcher, "fetch_many", None)
        if fetch_many is not None and not self._batch_denied:
            with self._lock:
                self._upstream_calls += 1
            try:
                found, failed = fetch_many(chunk)
                values.update(found)
                errors.update(failed)
            except AccessDeniedError:
                logger.info("BatchGetSecretValue is denied; prefetching one by one")
                self._batch_denied = True
            except FetchError as exc:
                return {}, dict.fromkeys(chunk, exc)
        for secret_id in chunk:
            if secret_id in values or secret_id in errors:
                continue
            if self._clock() >= deadline:
                errors[secret_id] = late
                continue
            with self._lock:
                self._upstream_calls += 1
            try:
                values[secret_id] = self._fetcher.fetch(secret_id)
            except FetchError as exc:
                errors[secret_id] = exc
        return values, errors

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            self._apply_touches()
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                stale=self._stale,
                upstream_calls=self._upstream_calls,
                upstream_errors=self._upstream_errors,
                coalesced=self._coalesced,
                backoff_errors=self._backoff_errors,
                evictions=self._evictions,
                entries=len(self._entries),
                timed_out=self._timed_out,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every cached value and failure (fetches under way still finish)."""
        with self._lock:
            self._apply_touches()  # counts the hits they stand for
            self._entries.clear()
            self._fresh.clear()

    def close(self) -> None:
        """Forget everything, stop background refreshes, close the fetcher."""
        self.clear()
        with self._lock:
            self._closed = True
            background, self._background = self._background, None
        if background is not None:
            background.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._fetcher, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return (
            f"SecretCache(ttl={self._config.ttl}, "
            f"max_entries={self._max_entries}, entries={len(self._entries)})"
        )
