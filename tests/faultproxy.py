"""A fault-injecting HTTP proxy for the end-to-end tests, run inside the test process.

FaultProxy listens on 127.0.0.1 (a free port) and forwards every request to one
upstream on the loopback interface, in practice moto in server mode. A test points a
client (boto3, or cachecore-server through AWS_ENDPOINT_URL_SECRETS_MANAGER) at
``proxy.url`` and tells the proxy, per Secrets Manager operation, to fail, to be
slow, to reset the connection, or to never answer::

    with FaultProxy(moto_url) as proxy:
        proxy.fail("GetSecretValue", "throttle", times=1)
        ...  # the next GetSecretValue gets ThrottlingException, later ones pass
        assert proxy.calls("GetSecretValue") == 2

The operation of a request is the part of its ``X-Amz-Target`` header after the last
dot: ``secretsmanager.GetSecretValue`` is ``GetSecretValue``. A request without that
header has the operation ``""``.

Each operation, and None (every operation), holds at most one delay and at most one
action: a failure, a reset or a black hole. Setting an action replaces the action
held for that operation before. A request takes the delay and the action of its own
operation if it has one, else the ones held for None. The delay comes first, then
the action. An action given ``times`` is used up by that many requests, then
removed. Faults may be changed from any thread at any time; a request uses the faults
in force when it reaches that step.

Every thread of the proxy ends in ``stop()``, which returns within about a second
even while requests are held, delayed or waiting for the upstream.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import ipaddress
import json
import math
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

__all__ = ["FailKind", "FaultProxy"]

HOST = "127.0.0.1"

FailKind = Literal["throttle", "error500", "deny", "not_found", "decrypt", "deleted"]

# kind -> (HTTP status, AWS error code, message)
_FAILURES: dict[str, tuple[int, str, str]] = {
    "throttle": (400, "ThrottlingException", "faultproxy: injected rate exceeded"),
    "error500": (500, "InternalServiceError", "faultproxy: injected internal error"),
    "deny": (400, "AccessDeniedException", "faultproxy: injected access denied"),
    "not_found": (
        400,
        "ResourceNotFoundException",
        "faultproxy: injected secret not found",
    ),
    "decrypt": (400, "DecryptionFailure", "faultproxy: injected decryption failure"),
    "deleted": (
        400,
        "InvalidRequestException",
        "faultproxy: injected secret marked for deletion",
    ),
}

# Headers of one hop, never forwarded in either direction (RFC 9110, 7.6.1), with
# Expect: the proxy has already read the whole body before it forwards anything.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

MAX_BODY = 16 * 1024 * 1024  # a larger request is refused with 413
UPSTREAM_TIMEOUT = 10.0  # seconds for connecting to the upstream and for each read
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request
HOLD_LIMIT = 60.0  # seconds a black hole holds a connection at most
STOP_TIMEOUT = 2.0  # seconds stop() waits for the threads of the proxy
_POLL_INTERVAL = 0.05  # seconds between checks of serve_forever for shutdown()

_LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger {l_onoff=1, l_linger=0}


@dataclass
class _Action:
    """What to do with a request instead of forwarding it."""

    kind: str  # a key of _FAILURES, "reset" or "black_hole"
    remaining: int | None  # requests left to fault; None: until cleared
    released: bool = False  # cleared or replaced: held requests let go


def _operation(target: str | None) -> str:
    return target.rpartition(".")[2].strip() if target else ""


def _end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers without the hop-by-hop ones, including those Connection names."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [
        (name, value)
        for name, value in pairs
        if name.lower() not in _HOP_BY_HOP and name.lower() not in named
    ]


def _check_times(times: int | None) -> None:
    if times is not None and (isinstance(times, bool) or times < 1):
        raise ValueError(f"times must be None or a positive int, not {times!r}")


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream_url``, with faults on demand.

    ``upstream_url`` is a base URL such as ``http://127.0.0.1:5000``; its host must be
    a loopback address or ``localhost``. A path in it is put in front of the path of
    every request. Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, upstream_url: str) -> None:
        parts = urllib.parse.urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream_url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"upstream must be a plain base URL: {upstream_url!r}")
        if not _is_loopback(parts.hostname):
            raise ValueError(f"upstream must be on the loopback: {upstream_url!r}")
        self._upstream_url = upstream_url
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self._upstream_netloc = parts.netloc
        self._upstream_prefix = parts.path.rstrip("/")

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # faults changed, or stopping
        self._stopping = threading.Event()
        self._actions: dict[str | None, _Action] = {}
        self._delays: dict[str | None, float] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._sockets: set[socket.socket] = set()  # open, both sides; under _lock
        self._aborting: set[socket.socket] = set()  # client sockets to reset
        self._threads: set[threading.Thread] = set()  # one per client connection
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._url: str | None = None

    # -- lifetime -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the proxy, ``http://127.0.0.1:PORT``; set by ``start()``."""
        if self._url is None:
            raise RuntimeError("FaultProxy is not started")
        return self._url

    @property
    def upstream_url(self) -> str:
        """The base URL every request is forwarded to."""
        return self._upstream_url

    def start(self) -> FaultProxy:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread.

        A proxy starts once: after ``stop()`` make a new one.
        """
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("a FaultProxy starts only once")
        server = _Server(self)
        port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"faultproxy-{port}-serve",
            daemon=True,
        )
        self._server, self._serve_thread = server, thread
        self._url = f"http://{HOST}:{port}"
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop every connection and wait for every thread to end.

        Held and delayed requests end without an answer. Does nothing if the proxy is
        not running. Raises RuntimeError if a thread is still alive after
        STOP_TIMEOUT seconds.
        """
        server, serve_thread = self._server, self._serve_thread
        if server is None or serve_thread is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        with self._lock:
            self._stopping.set()
            self._changed.notify_all()
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
                except OSError:
                    pass
            threads = list(self._threads)
        server.shutdown()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        serve_thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._serve_thread = None
        alive = [t.name for t in [*threads, serve_thread] if t.is_alive()]
        if alive:
            raise RuntimeError(f"FaultProxy threads still running after stop: {alive}")

    def __enter__(self) -> FaultProxy:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- counts -------------------------------------------------------------------

    def calls(self, operation: str) -> int:
        """How many requests for ``operation`` reached the proxy, faulted or not."""
        with self._lock:
            return self._counts[operation]

    def wait_calls(self, operation: str, count: int, timeout: float = 10.0) -> None:
        """Return once ``count`` requests for ``operation`` have arrived.

        Raises ``TimeoutError`` if they have not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.calls(operation) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.calls(operation)} of {count} {operation} calls "
                    f"arrived within {timeout:g}s"
                )
            time.sleep(0.005)

    def reset_counts(self) -> None:
        """Set every count of ``calls()`` back to zero."""
        with self._lock:
            self._counts.clear()

    # -- faults -------------------------------------------------------------------

    def fail(
        self, operation: str | None, kind: FailKind, times: int | None = None
    ) -> None:
        """Answer requests for ``operation`` (None: every one) with an AWS error.

        ``kind`` is "throttle" (400 ThrottlingException), "error500" (500
        InternalServiceError), "deny" (400 AccessDeniedException) or "not_found" (400
        ResourceNotFoundException). With ``times`` only the next that many requests
        fail; without, every one until cleared. Nothing is forwarded for them.
        """
        if kind not in _FAILURES:
            raise ValueError(f"unknown kind {kind!r}; one of {sorted(_FAILURES)}")
        _check_times(times)
        self._set_action(operation, _Action(kind, times))

    def reset(self, operation: str | None, times: int | None = None) -> None:
        """Read requests for ``operation``, then reset the connection, no answer.

        The socket is closed with SO_LINGER 0, so the client gets a TCP RST
        (ECONNRESET). ``times`` as for ``fail()``.
        """
        _check_times(times)
        self._set_action(operation, _Action("reset", times))

    def black_hole(self, operation: str | None) -> None:
        """Read requests for ``operation`` and never answer them.

        Each connection is held open until the fault is cleared or replaced, the proxy
        stops, or HOLD_LIMIT seconds pass; then it is closed without an answer.
        """
        self._set_action(operation, _Action("black_hole", None))

    def delay(self, operation: str | None, seconds: float) -> None:
        """Wait ``seconds`` before handling each request for ``operation``.

        The delay comes before any action of the same request; 0 removes it.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0, not {seconds!r}")
        with self._lock:
            if seconds:
                self._delays[operation] = float(seconds)
            else:
                self._delays.pop(operation, None)

    def clear(self, operation: str | None = None) -> None:
        """Remove the faults of ``operation``; with None, every fault of every one.

        Requests held by a removed black hole are let go (closed without an answer).
        """
        with self._lock:
            if operation is None:
                removed = list(self._actions.values())
                self._actions.clear()
                self._delays.clear()
            else:
                action = self._actions.pop(operation, None)
                removed = [action] if action else []
                self._delays.pop(operation, None)
            for action in removed:
                action.released = True
            self._changed.notify_all()

    # -- used by the request handlers ---------------------------------------------

    def _set_action(self, operation: str | None, action: _Action) -> None:
        with self._lock:
            old = self._actions.get(operation)
            if old is not None:
                old.released = True
            self._actions[operation] = action
            self._changed.notify_all()

    def _count(self, operation: str) -> None:
        with self._lock:
            self._counts[operation] += 1

    def _delay_for(self, operation: str) -> float:
        with self._lock:
            return self._delays.get(operation, self._delays.get(None, 0.0))

    def _take_action(self, operation: str) -> _Action | None:
        """The action for one request, using up one of its ``times``."""
        with self._lock:
            key: str | None = operation if operation in self._actions else None
            action = self._actions.get(key)
            if action is not None and action.remaining is not None:
                action.remaining -= 1
                if action.remaining <= 0:
                    del self._actions[key]
            return action

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the proxy stops; False if it stopped."""
        if seconds > 0:
            self._stopping.wait(seconds)
        return not self._stopping.is_set()

    def _hold(self, action: _Action) -> None:
        """Block until ``action`` is released, the proxy stops, or HOLD_LIMIT."""
        deadline = time.monotonic() + HOLD_LIMIT
        with self._changed:
            while not (action.released or self._stopping.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    def _adopt(self, request: socket.socket, thread: threading.Thread) -> bool:
        """Track a new client connection and start its thread; False if stopping."""
        with self._lock:
            if self._stopping.is_set():
                return False
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
            self._sockets.add(request)
            thread.start()
            return True

    def _abort_later(self, request: socket.socket) -> None:
        with self._lock:
            self._aborting.add(request)

    def _close_client(self, request: socket.socket) -> None:
        """Close a client socket: gracefully, or with a reset if so marked."""
        with self._lock:  # never closed while stop() shuts sockets down
            self._sockets.discard(request)
            try:
                if request in self._aborting:
                    self._aborting.discard(request)
                    request.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO
                    )
                else:
                    request.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            request.close()

    def _exchange(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send one request to the upstream; its status, reason, headers and body."""
        connection = http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=UPSTREAM_TIMEOUT
        )
        try:
            connection.connect()
            with self._lock:
                if self._stopping.is_set():
                    raise ConnectionAbortedError("FaultProxy is stopping")
                assert connection.sock is not None
                upstream: socket.socket = connection.sock
                self._sockets.add(upstream)
            connection.putrequest(
                method,
                self._upstream_prefix + path,
                skip_host=True,
                skip_accept_encoding=True,
            )
            connection.putheader("Host", self._upstream_netloc)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            with self._lock:
                if connection.sock is not None:
                    self._sockets.discard(connection.sock)
                connection.close()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose connections and threads its FaultProxy tracks."""

    daemon_threads = True
    block_on_close = False  # FaultProxy.stop() joins the threads, with a deadline

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__((HOST, 0), _Handler)

    def process_request(
        self,
        request: socket.socket,  # type: ignore[override]
        client_address: tuple[str, int],
    ) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"faultproxy-{self.server_address[1]}-conn",
            daemon=True,
        )
        if not self.proxy._adopt(request, thread):
            request.close()

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self.proxy._close_client(request)

    def handle_error(
        self,
        request: socket.socket,  # type: ignore[override]
        client_address: tuple[str, int],
    ) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away, or stop() shut the connection down
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One client connection: each request is counted, faulted or forwarded."""

    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    timeout = IDLE_TIMEOUT
    server: _Server

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest would show every request on a failure

    def _handle(self) -> None:
        proxy = self.server.proxy
        operation = _operation(self.headers.get("X-Amz-Target"))
        proxy._count(operation)
        body = self._read_body()
        if body is None:
            return
        if not proxy._pause(proxy._delay_for(operation)):
            self.close_connection = True
            return
        action = proxy._take_action(operation)
        if action is None:
            self._forward(body)
        elif action.kind == "reset":
            self.close_connection = True
            proxy._abort_later(self.connection)
        elif action.kind == "black_hole":
            self.close_connection = True
            proxy._hold(action)
        else:
            status, code, message = _FAILURES[action.kind]
            self._reply(
                status,
                json.dumps({"__type": code, "message": message}).encode(),
                "application/x-amz-json-1.1",
                [("x-amzn-ErrorType", code), ("x-amzn-RequestId", str(uuid.uuid4()))],
            )

    def _read_body(self) -> bytes | None:
        """The body of the request; None when it was refused (already answered)."""
        if not self.path.startswith("/"):
            self._refuse(400, "only origin-form targets (/path) are forwarded")
            return None
        if "transfer-encoding" in self.headers:
            self._refuse(411, "chunked request bodies are not supported")
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            self._refuse(400, f"bad Content-Length {length!r}")
            return None
        if size > MAX_BODY:
            self._refuse(413, f"request body over {MAX_BODY} bytes")
            return None
        body = self.rfile.read(size)
        if len(body) < size:  # the client closed the connection mid-body
            self.close_connection = True
            return None
        return body

    def _forward(self, body: bytes) -> None:
        proxy = self.server.proxy
        headers = [  # Host is the upstream's, set by _exchange
            (name, value)
            for name, value in _end_to_end(self.headers.items())
            if name.lower() != "host"
        ]
        try:
            status, reason, answer_headers, answer = proxy._exchange(
                self.command, self.path, headers, body
            )
        except (OSError, http.client.HTTPException) as error:
            if proxy._stopping.is_set():
                self.close_connection = True
                return
            message = f"upstream {proxy.upstream_url} failed: {error!r}"
            self._refuse(502, message, keep_alive=True)
            return
        kept = _end_to_end(answer_headers)
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        self.send_response_only(status, reason)
        for name, value in kept:
            if no_body or name.lower() != "content-length":
                self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if not no_body:
            self.wfile.write(answer)

    def _refuse(self, status: int, message: str, *, keep_alive: bool = False) -> None:
        """Answer with an error of the proxy itself, in plain text."""
        if not keep_alive:
            self.close_connection = True
        extra = [] if keep_alive else [("Connection", "close")]
        body = f"faultproxy: {message}\n".encode()
        self._reply(status, body, "text/plain; charset=utf-8", extra)

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]],
    ) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
