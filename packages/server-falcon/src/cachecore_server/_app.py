"""The HTTP API of cachecore as a Falcon WSGI app.

Two dialects share one ``SecretCache``: the Go cache server's ``/cache?name=`` (raw
secret in the body, one plain-text line on error) and AWS's
``/secretsmanager/get?secretId=`` (GetSecretValue-shaped JSON, and
``{"__type": ..., "message": ...}`` on error). ``/ping`` answers ``healthy``
without a token; ``/metrics`` answers the counters of ``_metrics`` in the
Prometheus text format, to the token sent either way. Every error, whatever
raised it, is rendered by one handler from one table, so a route cannot answer
with a status or body shape of its own.

The answer given most, a fresh hit on ``/cache?name=`` or
``/secretsmanager/get?secretId=`` in its plainest form, takes a lane of its own
past Falcon (``_HitLane``): the same checks, counts and bytes, with the bodies
rendered once per stored value. Everything else, and anything the lane is unsure
of, goes through Falcon.

Query strings are parsed here rather than by Falcon, because a secret name must
reach Secrets Manager exactly as sent: ``%XX`` escapes are decoded as UTF-8 and
``+`` stays a plus sign (secret names may hold ``+`` but never a space, and the
legacy PHP client inserts names without encoding them).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote_to_bytes
from wsgiref.types import StartResponse, WSGIEnvironment

import falcon

from cachecore import (
    AccessDeniedError,
    CacheError,
    Config,
    DecryptionError,
    FetchError,
    InvalidRequestError,
    Lookup,
    ParameterValue,
    SecretCache,
    SecretNotFoundError,
    SecretValue,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

from ._metrics import CONTENT_TYPE as _METRICS
from ._metrics import Metrics

__all__ = [
    "TOKEN_HEADER",
    "ApiError",
    "create_app",
    "parameter_document",
    "parse_query",
    "route_of",
    "secret_document",
]

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
METRICS_PATH = "/metrics"
_T = TypeVar("_T", SecretValue, ParameterValue)
_BEARER = "bearer "
_REFUSED_HEADERS = ("X-Forwarded-For", "Forwarded")
_PLAIN = "text/plain; charset=utf-8"
_JSON = "application/json"
_BINARY = "application/octet-stream"
_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})
_RETRY_AFTER_SECONDS = "1"
_MAX_ECHO = 64
_MAX_VERSION_DIGITS = 18  # a parameter version is a 64-bit number at most
#: The bytes of rendered bodies the app keeps for hits, in all (see ``_Bodies``).
BODY_BUDGET = 512 * 1024
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

#: The methods each route answers; any other method is a 405 naming these.
ROUTE_METHODS = {
    "/cache": ("GET", "POST"),
    "/secretsmanager/get": ("GET",),
    "/systemsmanager/parameters/get": ("GET",),
    "/openapi.json": ("GET",),
    "/ping": ("GET",),
    METRICS_PATH: ("GET",),
}
PATH_FORM = "/v1/"
#: The route label of a path that no route answers.
NO_ROUTE = "unmatched"


def _methods_of(path: str) -> tuple[str, ...] | None:
    if path.startswith(PATH_FORM):
        return ("GET",)
    return ROUTE_METHODS.get(path)


def route_of(path: str) -> str:
    """The route template a path belongs to (as in openapi.json), or ``NO_ROUTE``.

    This, never the path itself, labels a request in the metrics: a path of the
    ``/v1/`` form holds a secret name.
    """
    if path.startswith("//"):
        return NO_ROUTE
    if path.startswith(PATH_FORM):
        return "/v1/{secretId}"
    return path if path in ROUTE_METHODS else NO_ROUTE


#: How each error of the library is answered: (class, status, Retry-After?).
#: Subclasses come before their bases; the first match wins.
_FETCH_ERROR_STATUS: tuple[tuple[type[FetchError], str, bool], ...] = (
    (InvalidRequestError, falcon.HTTP_400, False),
    (SecretNotFoundError, falcon.HTTP_404, False),
    (AccessDeniedError, falcon.HTTP_403, False),
    (ThrottledError, falcon.HTTP_429, True),
    (UpstreamTimeoutError, falcon.HTTP_504, False),
    (DecryptionError, falcon.HTTP_502, False),
    (UpstreamUnavailableError, falcon.HTTP_502, False),
    (FetchError, falcon.HTTP_502, False),
)


class ApiError(Exception):
    """An answer other than 2xx that the API gives on purpose."""

    def __init__(
        self,
        status: str | int,
        aws_type: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.aws_type = aws_type
        self.message = message
        self.headers = headers or {}


def _bad_parameter(message: str) -> NoReturn:
    raise ApiError(falcon.HTTP_400, "InvalidParameterException", message)


_ECHOABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,23}")


def _shorten(text: str) -> str:
    """What of a caller's input an error may repeat: a short plain word, or nothing.

    Anything else (a value someone pasted, a token sent in the wrong place) is not
    echoed back, so an answer never carries more than the name of the problem.
    """
    return repr(text) if _ECHOABLE.fullmatch(text) else "(not shown)"


def parse_query(raw: str, allowed: Iterable[str]) -> dict[str, str]:
    """Split a WSGI ``QUERY_STRING`` into parameters, refusing what a route can't use.

    ``%XX`` escapes are decoded and the bytes read as UTF-8; ``+`` is kept as it is.
    Unknown, repeated and undecodable parameters, and a ``%`` that does not start
    an escape, raise ``ApiError`` (400).
    """
    allowed = frozenset(allowed)
    params: dict[str, str] = {}
    if not raw:
        return params
    for piece in raw.split("&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition("=")
        if _BAD_ESCAPE.search(piece):
            _bad_parameter("a % in the query string must start an escape such as %2F")
        try:
            name = unquote_to_bytes(raw_name.encode("latin-1")).decode("utf-8")
            value = unquote_to_bytes(raw_value.encode("latin-1")).decode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            _bad_parameter("the query string is not UTF-8 once %-escapes are decoded")
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) if allowed else "no parameters"
            _bad_parameter(
                f"unknown parameter {_shorten(name)}; this route takes {takes}"
            )
        if name in params:
            _bad_parameter(f"parameter {_shorten(name)} is given more than once")
        params[name] = value
    return params


def _flag(params: dict[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    _bad_parameter(f"{name} must be 1, 0, true or false, got {_shorten(raw)}")


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        _bad_parameter(f"the {name} parameter is required")
    return value


def _optional(params: dict[str, str], name: str) -> str | None:
    value = params.get(name)
    if value == "":
        _bad_parameter(f"the {name} parameter must not be empty")
    return value


def _cache_headers(resp: falcon.Response, lookup: Lookup[Any]) -> None:
    resp.set_header("X-Cache", lookup.state.upper())
    resp.set_header("Age", str(int(lookup.age)))


def _refused_here(exc: FetchError) -> bool:
    """Whether the cache refused the name itself, before any lookup.

    Such a name was never looked up, and must not become a label value.
    """
    return isinstance(exc, InvalidRequestError) and exc.secret_id is None


class _Lookups:
    """The lookups the routes make, counted by name when the metrics ask for it."""

    def __init__(self, cache: SecretCache, metrics: Metrics) -> None:
        self._cache = cache
        self._metrics = metrics

    def lookup(
        self,
        secret_id: str,
        *,
        version_id: str | None,
        version_stage: str | None,
        refresh: bool,
    ) -> Lookup[SecretValue]:
        return self._counted(
            "secret",
            secret_id,
            lambda: self._cache.lookup(
                secret_id,
                version_id=version_id,
                version_stage=version_stage,
                refresh=refresh,
            ),
        )

    def lookup_parameter(
        self,
        name: str,
        *,
        version: int | None,
        label: str | None,
        with_decryption: bool,
    ) -> Lookup[ParameterValue]:
        return self._counted(
            "parameter",
            name,
            lambda: self._cache.lookup_parameter(
                name, version=version, label=label, with_decryption=with_decryption
            ),
        )

    def _counted(
        self, kind: str, name: str, look_up: Callable[[], Lookup[_T]]
    ) -> Lookup[_T]:
        """``look_up()``, counted by its state, or as an error the cache reached."""
        try:
            found = look_up()
        except FetchError as exc:
            if not _refused_here(exc):
                self._metrics.count_lookup(kind, name, "error")
            raise
        self._metrics.count_lookup(kind, name, found.state)
        return found


def _epoch_seconds(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return f"{moment.timestamp():.3f}".rstrip("0").rstrip(".")


def _iso_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parameter_document(value: ParameterValue) -> dict[str, Any]:
    """The GetParameter-shaped JSON object that AWS's extension answers with."""
    return {
        "Parameter": {
            "ARN": value.arn,
            "DataType": value.data_type,
            "LastModifiedDate": _iso_time(value.last_modified_date),
            "Name": value.name,
            "Selector": value.selector,
            "SourceResult": value.source_result,
            "Type": value.type,
            "Value": value.value,
            "Version": value.version,
        },
        "ResultMetadata": {},
    }


def secret_document(value: SecretValue) -> dict[str, Any]:
    """The GetSecretValue-shaped JSON object that AWS's extension answers with."""
    document: dict[str, Any] = {
        "ARN": value.arn,
        "Name": value.name,
        "VersionId": value.version_id,
    }
    if value.secret_binary is not None:
        document["SecretBinary"] = base64.b64encode(value.secret_binary).decode()
    else:
        document["SecretString"] = value.secret_string
    document["VersionStages"] = list(value.version_stages)
    created = _epoch_seconds(value.created_date)
    if created is not None:
        document["CreatedDate"] = created
    return document


class _Bodies:
    """The bodies last rendered for each name, kept while the value is the same.

    A value is recognised by identity: the cache hands out the same object until
    it fetches anew. A kept body is a second copy of its secret, so the copies are
    bounded in bytes, not only in names: at most ``budget`` bytes and
    ``max_names`` names in all. Storing past either bound forgets every kept body
    first, so no old value outlives many fetches here; the hottest names are
    rendered again on their next read. A binary secret answered as it is costs
    no copy and is not counted.
    """

    def __init__(self, max_names: int, budget: int = BODY_BUDGET) -> None:
        self._max_names = max_names
        self._budget = budget
        self._size = 0
        self._lock = threading.Lock()
        self._json: dict[str, tuple[SecretValue, bytes]] = {}
        self._raw: dict[str, tuple[SecretValue, str, bytes]] = {}

    def _keep(self, kept: dict[str, Any], name: str, entry: tuple[Any, ...]) -> None:
        """Store ``entry`` (whose last item is the body) under ``name`` in ``kept``."""
        body: bytes = entry[-1]
        size = 0 if body is entry[0].secret_binary else len(body)
        if size > self._budget:
            return
        with self._lock:
            old = kept.pop(name, None)
            if old is not None and old[-1] is not old[0].secret_binary:
                self._size -= len(old[-1])
            names = len(self._json) + len(self._raw)
            if self._size + size > self._budget or names >= self._max_names:
                self._json.clear()
                self._raw.clear()
                self._size = 0
            kept[name] = entry
            self._size += size

    def secret_json(self, name: str, value: SecretValue) -> bytes:
        """The GetSecretValue JSON of ``value``, as ``/secretsmanager/get`` answers."""
        kept = self._json.get(name)
        if kept is not None and kept[0] is value:
            return kept[1]
        body = json.dumps(secret_document(value)).encode("utf-8")
        self._keep(self._json, name, (value, body))
        return body

    def raw(self, name: str, value: SecretValue) -> tuple[str, bytes]:
        """The content type and body of ``value`` as ``/cache`` answers it."""
        kept = self._raw.get(name)
        if kept is not None and kept[0] is value:
            return kept[1], kept[2]
        if value.secret_binary is not None:
            content_type, body = _BINARY, value.secret_binary
        else:
            # surrogatepass: a lone surrogate in a JSON secret must not fail the answer
            body = (value.secret_string or "").encode("utf-8", "surrogatepass")
            content_type = _PLAIN
        self._keep(self._raw, name, (value, content_type, body))
        return content_type, body

    @property
    def size(self) -> int:
        """The bytes of the bodies kept now (binary secrets not counted)."""
        return self._size


class _LegacyCache:
    """``/cache?name=N&refresh=0|1``: the Go cache server's dialect."""

    _PARAMS = ("name", "refresh", "versionId", "versionStage")

    def __init__(self, cache: _Lookups, bodies: _Bodies) -> None:
        self._cache = cache
        self._bodies = bodies

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = parse_query(req.query_string, self._PARAMS)
        name = _required(params, "name")
        lookup = self._cache.lookup(
            name,
            version_id=_optional(params, "versionId"),
            version_stage=_optional(params, "versionStage"),
            refresh=_flag(params, "refresh"),
        )

        resp.content_type, resp.data = self._bodies.raw(name, lookup.value)
        _cache_headers(resp, lookup)

    on_post = on_get


def _answer_secret(
    cache: _Lookups,
    bodies: _Bodies,
    resp: falcon.Response,
    secret_id: str,
    params: dict[str, str],
) -> None:
    lookup = cache.lookup(
        secret_id,
        version_id=_optional(params, "versionId"),
        version_stage=_optional(params, "versionStage"),
        refresh=_flag(params, "refreshNow"),
    )

    resp.content_type = _JSON
    resp.data = bodies.secret_json(secret_id, lookup.value)
    _cache_headers(resp, lookup)


class _AwsSecret:
    """``/secretsmanager/get?secretId=N``: the AWS extension's dialect."""

    _PARAMS = ("secretId", "versionId", "versionStage", "refreshNow")

    def __init__(self, cache: _Lookups, bodies: _Bodies) -> None:
        self._cache = cache
        self._bodies = bodies

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = parse_query(req.query_string, self._PARAMS)
        secret_id = _required(params, "secretId")
        _answer_secret(self._cache, self._bodies, resp, secret_id, params)


class _AwsSecretPath:
    """``/v1/<secret id>``: the AWS agent's path form of the same answer.

    The id is everything after ``/v1/``, exactly as the server decoded the path:
    slashes, dots and ``..`` are part of the name and never move to another route.
    """

    _PARAMS = ("versionId", "versionStage", "refreshNow")

    def __init__(self, cache: _Lookups, bodies: _Bodies) -> None:
        self._cache = cache
        self._bodies = bodies

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, secret_id: str = ""
    ) -> None:
        params = parse_query(req.query_string, self._PARAMS)
        raw = str(req.env.get("PATH_INFO", ""))[len(PATH_FORM) :]
        try:
            secret_id = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            _bad_parameter("the secret id in the path is not UTF-8")
        if not secret_id:
            _bad_parameter("the path must name a secret: /v1/<secret id>")
        _answer_secret(self._cache, self._bodies, resp, secret_id, params)


class _Parameter:
    """``/systemsmanager/parameters/get?name=N``: SSM parameters, AWS's dialect."""

    _PARAMS = ("name", "version", "label", "withDecryption")

    def __init__(self, cache: _Lookups) -> None:
        self._cache = cache

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = parse_query(req.query_string, self._PARAMS)
        raw_version = _optional(params, "version")
        version = None
        if raw_version is not None:
            if (
                not raw_version.isascii()
                or not raw_version.isdigit()
                or len(raw_version) > _MAX_VERSION_DIGITS
            ):
                _bad_parameter(
                    f"version must be a positive integer, got {_shorten(raw_version)}"
                )
            version = int(raw_version)
        lookup = self._cache.lookup_parameter(
            _required(params, "name"),
            version=version,
            label=_optional(params, "label"),
            with_decryption=_flag(params, "withDecryption"),
        )

        resp.content_type = _JSON
        resp.data = json.dumps(parameter_document(lookup.value)).encode("utf-8")
        _cache_headers(resp, lookup)


class _OpenApi:
    """``/openapi.json``: the OpenAPI 3.1 document of this API."""

    def __init__(self) -> None:
        self._document = (
            resources.files("cachecore_server").joinpath("openapi.json").read_bytes()
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        parse_query(req.query_string, ())
        resp.content_type = _JSON
        resp.data = self._document


class _Metrics:
    """``/metrics``: the app's counters in the Prometheus text format 0.0.4."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        parse_query(req.query_string, ())
        resp.content_type = _METRICS
        resp.data = self._metrics.exposition()


class _Ping:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        parse_query(req.query_string, ())
        resp.content_type = _PLAIN
        resp.data = b"healthy"


class _Guard:
    """Checks every request before it reaches a route: token, then forwarding."""

    def __init__(self, config: Config) -> None:
        token = config.token if config.auth == "token" else None
        self._token = token.encode("utf-8") if token is not None else None
        self._required = config.auth == "token"

    def _check_token(self, req: falcon.Request) -> None:
        """401 without a token, 403 with a wrong one.

        ``/metrics`` also takes ``Authorization: Bearer <token>``, as Prometheus
        sends it; there each of the two headers that is present, even empty,
        must hold the token.
        """
        sent = {TOKEN_HEADER: req.get_header(TOKEN_HEADER)}
        if req.path == METRICS_PATH:
            sent["Authorization"] = req.get_header("Authorization")
        if not any(sent.values()):
            also = " (or Authorization: Bearer)" if req.path == METRICS_PATH else ""
            raise ApiError(
                falcon.HTTP_401,
                "MissingTokenException",
                f"the {TOKEN_HEADER} header{also} is required",
            )
        expected = self._token or b""
        for header, value in sent.items():
            if value is None:
                continue
            token = _bearer_token(value) if header == "Authorization" else value
            if (
                not expected
                or token is None
                or not hmac.compare_digest(token.encode("latin-1", "replace"), expected)
            ):
                raise ApiError(
                    falcon.HTTP_403,
                    "InvalidTokenException",
                    f"the {header} header does not hold the right token",
                )

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Cache-Control", "no-store")
        if str(req.env.get("PATH_INFO", "")).startswith("//"):
            # Falcon routes "//v1/x" as "/v1/x", while the id is read from the path
            # as sent: a path must start with exactly one slash, as every route does.
            raise ApiError(
                falcon.HTTP_404,
                "UnknownOperationException",
                "no such route: a path starts with one slash",
            )
        if self._required and req.path != "/ping":
            self._check_token(req)
        allowed = _methods_of(req.path)
        if allowed is not None and req.method not in allowed:
            raise ApiError(
                falcon.HTTP_405,
                "MethodNotAllowedException",
                f"{req.path} answers {' and '.join(allowed)} only",
                {"Allow": ", ".join(allowed)},
            )
        for header in _REFUSED_HEADERS:
            if req.get_header(header) is not None:
                raise ApiError(
                    falcon.HTTP_400,
                    "InvalidRequestException",
                    f"requests carrying {header} are refused: the cache answers "
                    "local callers only",
                )


#: Where a WSGI server puts the headers the lane reads, as ``get_header`` finds them.
_TOKEN_ENVIRON = "HTTP_" + TOKEN_HEADER.upper().replace("-", "_")
_REFUSED_ENVIRON = tuple(
    "HTTP_" + header.upper().replace("-", "_") for header in _REFUSED_HEADERS
)
#: The headers refused, as servers that give lowercase names (granian) name them.
REFUSED_HEADER_NAMES = tuple(header.lower() for header in _REFUSED_HEADERS)
# The hit paths test each refused header by name, two ``in`` tests being a fifth
# of the cost of a loop over them: a third header here must fail the import until
# they test it too.
_REFUSED_ENVIRON_1, _REFUSED_ENVIRON_2 = _REFUSED_ENVIRON
#: The routes of the lane: path -> (the one parameter of its query, JSON answer?).
_HIT_ROUTES = {"/secretsmanager/get": ("secretId=", True), "/cache": ("name=", False)}
_NO_STORE = ("cache-control", "no-store")
_HIT = ("x-cache", "HIT")
_JSON_TYPE = ("content-type", _JSON)
_PLAIN_TYPE = ("content-type", _PLAIN)
_BINARY_TYPE = ("content-type", _BINARY)
#: The most queries the lane remembers.
_MAX_NAMES = 4096


class _Plan:
    """What the lane remembers of one query: whom it names, and how a hit is told.

    ``fields`` is the last hit's header fields with the content type, body length
    and whole second of age they were made from, which alone decide them, in one
    tuple that is replaced, never changed, so a thread reads all of one hit. Nothing
    here refers to a secret's value or body: those are the cache's and
    ``_Bodies``', whose bounds hold.
    """

    __slots__ = ("count", "fields", "name")

    def __init__(self, name: str, count: Callable[[], object]) -> None:
        self.name = name
        #: Counts a hit on this query, as ``Metrics.count_hit`` would.
        self.count = count
        self.fields: tuple[tuple[str, str] | None, int, int, list[tuple[str, str]]] = (
            None,
            -1,
            -1,
            [],
        )


class _HitLane:
    """Answers a fresh hit asked for in the plainest form, or leaves it to Falcon.

    The plainest form is a method the route answers, on exactly ``/cache`` or
    ``/secretsmanager/get``, whose query is ``name=`` or ``secretId=`` and an
    ASCII name without ``%`` or ``&`` (which ``parse_query`` reads as it is),
    with the right token, if one is required, and no forwarding header. The lane
    makes ``_Guard``'s checks, counts what ``_RequestCounter`` and ``_Lookups``
    count, and answers the headers and bytes the route would. For anything else
    ``answer`` gives ``None`` and Falcon answers; the lane has then answered and
    counted nothing, though it may have remembered the query of a request that
    passed its checks.
    """

    def __init__(
        self, cache: SecretCache, config: Config, metrics: Metrics, bodies: _Bodies
    ) -> None:
        self._fresh_hit = cache.fresh_hit
        self._metrics = metrics
        self._bodies = bodies
        token = config.token if config.auth == "token" else None
        self._required = config.auth == "token"
        # compare_digest takes str as well as bytes, if both are ASCII; a token
        # that is not is compared by Falcon's route, as bytes.
        self._token = token if token and token.isascii() else None
        #: Per (path, method) the lane answers: the route's query parameter, whether
        #: it answers JSON, and the plans of the queries asked for with them.
        self._routes: dict[tuple[str, str], tuple[str, bool, dict[str, _Plan]]] = {
            (path, method): (prefix, as_json, {})
            for path, (prefix, as_json) in _HIT_ROUTES.items()
            for method in ROUTE_METHODS[path]
        }
        self._planned = 0

    def answer(
        self, env: WSGIEnvironment
    ) -> tuple[list[tuple[str, str]], bytes] | None:
        """The headers and body of a hit, counted; ``None`` to leave it to Falcon.

        The environ's values are ``str``, as PEP 3333 has them and Falcon reads them.
        """
        return self.answer_request(
            env.get("PATH_INFO", ""),
            env.get("REQUEST_METHOD", ""),
            env.get(_TOKEN_ENVIRON),
            _REFUSED_ENVIRON_1 in env or _REFUSED_ENVIRON_2 in env,
            env.get("QUERY_STRING", ""),
        )

    def answer_request(
        self,
        path: str,
        method: str,
        token: str | None,
        forwarded: bool,
        query: str,
    ) -> tuple[list[tuple[str, str]], bytes] | None:
        """``answer`` of a request given by its parts, for servers without an environ.

        ``token`` is the token header as sent (``None`` if absent, or sent more than
        once), and ``forwarded`` whether a forwarding header came.
        """
        route = self._routes.get((path, method))
        if route is None or forwarded:
            return None
        if self._required:
            try:  # TypeError: no token, or one that is not ASCII
                if not hmac.compare_digest(token, self._token):  # type: ignore[type-var]
                    return None
            except TypeError:
                return None
        prefix, as_json, plans = route
        plan = plans.get(query)
        if plan is None:
            plan = self._plan(path, method, prefix, query)
            if plan is None:
                return None

        found = self._fresh_hit(plan.name)
        if found is None:
            return None
        value, age = found
        plan.count()
        if as_json:
            body = self._bodies.secret_json(plan.name, value)
            content_type = _JSON_TYPE
        else:
            raw_type, body = self._bodies.raw(plan.name, value)
            content_type = _PLAIN_TYPE if raw_type == _PLAIN else _BINARY_TYPE
        seconds = int(age)
        fields = plan.fields
        if (
            fields[0] is not content_type
            or fields[1] != len(body)
            or fields[2] != seconds
        ):
            headers = _hit_fields(content_type, seconds, len(body))
            fields = (content_type, len(body), seconds, headers)
            plan.fields = fields
        return fields[3], body

    def _plan(self, path: str, method: str, prefix: str, query: str) -> _Plan | None:
        """The plan of a query of the plainest form, remembered; else ``None``.

        Only a request that passed the lane's checks is planned. The query (with its
        parameter) is the key, so ``name=x`` and ``secretId=x`` are remembered
        apart. At most ``_MAX_NAMES`` are kept; past that, all are forgotten.
        """
        if not query.startswith(prefix):
            return None
        name = query[len(prefix) :]
        if not name or "%" in name or "&" in name or not name.isascii():
            return None
        if self._planned >= _MAX_NAMES:
            for _, _, plans in self._routes.values():
                plans.clear()
            self._planned = 0
        plan = _Plan(name, self._metrics.hit_counter(path, method, name))
        self._routes[path, method][2][query] = plan
        self._planned += 1
        return plan


def _hit_fields(
    content_type: tuple[str, str], age: int, length: int
) -> list[tuple[str, str]]:
    """The header fields of a hit: the same as the routes give, in the lane's words."""
    return [
        _NO_STORE,
        content_type,
        _HIT,
        ("age", str(age)),
        ("content-length", str(length)),
    ]


class _App(falcon.App[falcon.Request, falcon.Response]):
    """Falcon's app, with the lane for hits in front of it."""

    __slots__ = ("_lane",)

    def __init__(self, lane: _HitLane, middleware: list[Any]) -> None:
        super().__init__(middleware=middleware)
        self._lane = lane

    @property
    def lane(self) -> _HitLane:
        """The lane, for a server that hands requests over by their parts."""
        return self._lane

    def __call__(
        self, env: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer a request: a hit in the lane, anything else by Falcon."""
        answer = self._lane.answer(env)
        if answer is None:
            return super().__call__(env, start_response)
        headers, body = answer
        start_response("200 OK", headers)
        return [body]


def _bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[: len(_BEARER)].lower() == _BEARER:
        return authorization[len(_BEARER) :].strip() or None
    return None


class _RequestCounter:
    """Counts every answer the app gives, by route template, method and status."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        self._metrics.count_request(route_of(req.path), req.method, resp.status_code)


def _is_plain_route(req: falcon.Request) -> bool:
    return req.path in ("/cache", "/ping")


def _as_http_error(ex: BaseException) -> ApiError:
    if isinstance(ex, ApiError):
        return ex
    if isinstance(ex, FetchError):
        for kind, status, retry in _FETCH_ERROR_STATUS:
            if isinstance(ex, kind):
                headers = {"Retry-After": _RETRY_AFTER_SECONDS} if retry else None
                return ApiError(status, ex.code, ex.message, headers)
    if isinstance(ex, falcon.HTTPNotFound):
        return ApiError(
            falcon.HTTP_404,
            "UnknownOperationException",
            "no such route; see the README for the routes this server answers",
        )
    if isinstance(ex, falcon.HTTPError):
        return ApiError(ex.status, "InvalidRequestException", ex.title or "bad request")
    logger.error("unexpected error while answering a request", exc_info=ex)
    return ApiError(
        falcon.HTTP_500, "InternalFailure", "internal error; see the server log"
    )


class _ErrorRenderer:
    """Renders every error; the token never appears in what it writes."""

    def __init__(self, config: Config) -> None:
        self._token = config.token

    def __call__(
        self, req: falcon.Request, resp: falcon.Response, ex: BaseException, params: Any
    ) -> None:
        error = _as_http_error(ex)
        message = " ".join(error.message.split())  # one line, whatever upstream said
        if self._token:
            message = message.replace(self._token, "(token)")
        _write_error(req, resp, error, message)


def _write_error(
    req: falcon.Request, resp: falcon.Response, error: ApiError, message: str
) -> None:
    resp.status = error.status
    for name, value in error.headers.items():
        resp.set_header(name, value)
    resp.set_header("Cache-Control", "no-store")
    if _is_plain_route(req):
        resp.content_type = _PLAIN
        resp.data = (message + "\n").encode("utf-8", "replace")
    else:
        resp.content_type = _JSON
        resp.data = json.dumps({"__type": error.aws_type, "message": message}).encode(
            "utf-8"
        )


def create_app(
    cache: SecretCache, config: Config
) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app serving ``cache`` with the auth settings of ``config``.

    The app's metrics are its own: it tells the cache's fetchers (those that take
    an observer) to report their calls to it.
    """
    metrics = Metrics(cache, config)
    for fetcher in (cache.fetcher, cache.parameter_fetcher):
        add_observer = getattr(fetcher, "add_observer", None)
        if callable(add_observer):
            add_observer(metrics.observe_fetch)
    lookups = _Lookups(cache, metrics)
    bodies = _Bodies(config.max_entries)

    middleware: list[Any] = [_RequestCounter(metrics), _Guard(config)]
    app = _App(_HitLane(cache, config, metrics, bodies), middleware)
    app.add_route("/cache", _LegacyCache(lookups, bodies))
    app.add_route("/secretsmanager/get", _AwsSecret(lookups, bodies))
    app.add_route("/v1/{secret_id:path}", _AwsSecretPath(lookups, bodies))
    app.add_route("/systemsmanager/parameters/get", _Parameter(lookups))
    app.add_route("/openapi.json", _OpenApi())
    app.add_route("/ping", _Ping())
    app.add_route(METRICS_PATH, _Metrics(metrics))
    render = _ErrorRenderer(config)
    for kind in (Exception, falcon.HTTPError, CacheError, ApiError):
        app.add_error_handler(kind, render)
    return app
