"""granian, a server written in Rust, running the sidecar's app.

granian is an optional extra (``cachecore-server[granian]``): its wheel holds a
compiled Rust library that the default install should not need. As under gunicorn,
the app is built in the main process, so a bad setting stops start-up in the
foreground, and one worker process is forked from it (one process, one cache).
The worker is forked, not spawned, because the app holds a cache and clients that
cannot be pickled.

The worker speaks RSGI, granian's asynchronous interface, through ``Bridge``: a
fresh hit is answered by the app's hit lane on the worker's event loop (uvloop
where it is installed), and every other request goes to the WSGI app on one of
``threads`` threads, through an environ built from the request. Under granian's
WSGI interface every request took one of several Python threads, and their
contention for the GIL cost a third of the hits per second and made p99 ten times
p50 at 16 connections (``docs/benchmarks.md``); on the loop a hit needs no thread
hand-off, and a miss waiting on AWS still holds only its own thread.

What granian applies of the sidecar's limits, and what it does not:

- ``CACHECORE_REQUEST_TIMEOUT`` becomes granian's time to read a request head;
  a connection that has not sent one by then is closed, without the 408 answer
  of the other servers. An idle kept-alive connection is closed after as long.
- ``CACHECORE_SHUTDOWN_TIMEOUT`` bounds the stop: on SIGTERM or SIGINT the main
  process closes the listener and signals the worker to stop, and kills it if it
  has not exited once the time is up. That the worker finishes the requests under
  way first is granian's behaviour, not tested here as it is for the others.
- ``CACHECORE_MAX_CONNECTIONS`` bounds the requests under way at once (granian's
  backpressure) and the listener's backlog, not the connections open: a
  connection beyond it waits instead of being answered 429.
- A body declared longer than ``MAX_REQUEST_BODY`` is answered 413, as the other
  servers do; no route reads a body, so none is read (granian discards it,
  chunked ones included, whatever their size).
- The other answers of ``_limits`` (408, 414, 429, 431) are not given: granian
  (hyper) answers a request line or head over its buffer, or a bad request, in
  its own way (often by closing the connection). The app's own answers (400,
  401, 403, 404, 405, ...) are the same as under the other servers.
- granian decodes the path before the app sees it, replacing bytes that are not
  UTF-8 with U+FFFD; a path holding U+FFFD is therefore read as not UTF-8 and
  answered 400, as the other servers answer such bytes. (No secret name may hold
  that character.) Raw bytes that are not ASCII in the path are read as if
  percent-encoded, where the other servers answer 400 (in the query they are
  answered 400 here too).
- granian gives no header value that is not ASCII. The only copy of a header
  that is not ASCII reaches the app as one byte that is not UTF-8, so such a
  token is wrong (403); but beside copies that are ASCII it is not seen at all,
  so the right token sent with a second, non-ASCII copy is answered 200 where
  the other servers answer 403. Header names holding ``_`` are dropped, as the
  other servers drop them.
- A client that half-closes its connection after its request gets no answer
  (hyper closes); the other servers answer. Use a client that keeps its
  connection open until it has the answer, as ``packaging/healthcheck.py`` does.
- One port only: granian binds one address.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import math
import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._app import REFUSED_HEADER_NAMES, TOKEN_HEADER
from ._limits import MAX_REQUEST_BODY, answer_body, answer_headers

__all__ = ["Bridge", "available", "serve_granian"]

logger = logging.getLogger(__name__)

#: granian's lines go to the root logger, whose handler the CLI has set up.
_LOG_CONFIG: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": False},
    },
}


def available() -> bool:
    """Whether granian can be imported (the ``granian`` extra is installed)."""
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


#: The ways ``serve_granian`` can serve an app.
INTERFACES = ("bridge", "wsgi", "rsgi")
_TOKEN = TOKEN_HEADER.lower()
#: The refused headers, each tested by name (see _app: a third fails the import).
_REFUSED_1, _REFUSED_2 = REFUSED_HEADER_NAMES
#: U+FFFD, as UTF-8 read as Latin-1 (how a WSGI environ holds it), and a byte that
#: is not UTF-8 in its place.
_REPLACEMENT = "\ufffd".encode().decode("latin-1")
_NOT_UTF8 = "\xff"
#: The environ's names of the headers PEP 3333 gives without ``HTTP_``.
_UNPREFIXED = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
#: The most digits of a ``Content-Length`` read (int() refuses over 4300).
_MAX_LENGTH_DIGITS = 18


def _latin1(text: str) -> str:
    """``text`` (decoded from UTF-8 by granian) as PEP 3333 has it: its bytes."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _answer(status: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """One of ``_limits``' JSON answers, closing the connection."""
    body = answer_body(status)
    headers = answer_headers(status)
    headers += [("Content-Length", str(len(body))), ("Connection", "close")]
    return status, headers, body


class Bridge:
    """The sidecar's WSGI app served over RSGI: hits on the loop, the rest in threads.

    ``app`` is the app of ``create_app``; its hit lane answers on the event loop.
    Any other WSGI app is served too, every request in a thread. The threads are
    started in the worker (``__rsgi_init__``), never before the fork.
    """

    def __init__(self, app: Callable[..., Any], threads: int, port: int) -> None:
        self._app = app
        lane = getattr(app, "lane", None)
        self._answer_hit = None if lane is None else lane.answer_request
        self._threads = threads
        self._port = str(port)
        self._pool: ThreadPoolExecutor | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the threads that run the WSGI app (granian calls it in the worker).

        What the worker inherited is moved out of the garbage collector's sight
        (``gc.freeze``): it lives as long as the worker, and collections would
        walk it, and write to its pages that the fork shares, for nothing.
        """
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="request")
        gc.freeze()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let the threads end once the requests they run are answered."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        """Answer one request (granian calls this for each; websockets are off)."""
        headers = scope.headers
        length = headers.get("content-length")
        if length is not None:
            # hyper has checked that it is digits; a long run of them (zeros, for
            # hyper) is refused as gunicorn and waitress refuse it.
            if len(length) > _MAX_LENGTH_DIGITS:
                proto.response_bytes(*_answer(400))
                return
            if int(length) > MAX_REQUEST_BODY:
                proto.response_bytes(*_answer(413))
                return
        answer_hit = self._answer_hit
        if answer_hit is not None:
            tokens = headers.get_all(_TOKEN)
            hit = answer_hit(
                scope.path,
                scope.method,
                tokens[0] if len(tokens) == 1 else None,
                _REFUSED_1 in headers or _REFUSED_2 in headers,
                scope.query_string,
            )
            if hit is not None:
                proto.response_bytes(200, hit[0], hit[1])
                return
        if not scope.query_string.isascii():
            # Bytes that are not ASCII were sent as they are; the other servers
            # refuse such a request target too.
            proto.response_bytes(*_answer(400))
            return
        environ = self._environ(scope, headers)
        # granian calls __rsgi_init__, which makes the pool, before any request.
        loop = asyncio.get_running_loop()
        status, answer_headers_, body = await loop.run_in_executor(
            self._pool, self._call, environ
        )
        proto.response_bytes(status, answer_headers_, body)

    def _environ(self, scope: Any, headers: Any) -> dict[str, Any]:
        """A PEP 3333 environ of the request; the body is not read (see above)."""
        path = _latin1(scope.path).replace(_REPLACEMENT, _NOT_UTF8)
        client = scope.client.rpartition(":")[0].strip("[]")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": _latin1(scope.query_string),
            "SERVER_NAME": "localhost",
            "SERVER_PORT": self._port,
            "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
            "REMOTE_ADDR": client,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope.scheme,
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name in headers.keys():
            if "_" in name:
                # As gunicorn and waitress do: X_Token must not pass for X-Token.
                continue
            # granian gives no value that is not ASCII: it stands for one here
            # that no check accepts, as Latin-1 text never decodes to a token.
            parts = headers.get_all(name) or [_NOT_UTF8]
            value = ",".join(_latin1(part) for part in parts)
            key = _UNPREFIXED.get(name)
            if key is None:
                key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = value
        return environ

    def _call(
        self, environ: dict[str, Any]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run the WSGI app on ``environ`` (in a thread): status, headers and body."""
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            started[:] = [status, headers]
            return chunks.append

        chunks: list[bytes] = []
        try:
            result = self._app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            status, headers = started
            return int(status[:3]), list(headers), b"".join(chunks)
        except Exception:
            logger.exception("the app failed on a request")
            return _answer(500)


def serve_granian(
    app: Callable[..., Any],
    host: str,
    port: int,
    threads: int,
    graceful_timeout: float,
    request_timeout: float,
    max_connections: int,
    interface: str = "bridge",
) -> None:
    """Serve ``app`` under granian on ``host:port`` until SIGTERM or SIGINT.

    ``interface`` is how: ``"bridge"``, the sidecar's way (see above), or, for the
    benchmarks' floors, ``"wsgi"`` (a WSGI app on granian's own WSGI interface, on
    ``threads`` threads) or ``"rsgi"`` (``app`` is an RSGI app, run on the loop).
    """
    if interface not in INTERFACES:
        raise ValueError(f"interface must be one of {INTERFACES}, got {interface!r}")
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    # The worker must inherit the app built here; spawning would pickle it.
    multiprocessing.set_start_method("fork", force=True)
    server = Granian(
        "cachecore_server:app",  # a name for the process title; never imported
        address=host.strip("[]"),
        port=port,
        interface=Interfaces.WSGI if interface == "wsgi" else Interfaces.RSGI,
        workers=1,
        blocking_threads=threads if interface == "wsgi" else 1,
        runtime_threads=1,
        loop=Loops.auto,  # uvloop where it is installed, else asyncio
        http=HTTPModes.http1,
        websockets=False,
        backlog=max_connections,
        backpressure=max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(request_timeout * 1000)),
            keep_alive=True,
        ),
        log_dictconfig=_LOG_CONFIG,
        log_level=LogLevels.info,
        workers_kill_timeout=max(1, math.ceil(graceful_timeout)),
    )
    logger.info("granian serving on http://%s:%s", host, port)
    # granian calls a Bridge's __rsgi__.
    loaded: Any = Bridge(app, threads, port) if interface == "bridge" else app
    server.serve(target_loader=lambda *args: loaded, wrap_loader=False)
