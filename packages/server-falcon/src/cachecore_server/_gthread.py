"""gunicorn's ``gthread`` worker, changed so that no thread waits for a request.

The stock worker hands a connection to a pool thread as soon as it is accepted,
and the thread reads the request head from a blocking socket with no timeout: as
many clients as there are threads, each sending part of a head, stop the server.
This worker keeps every connection in its poller, reading without blocking, until
a complete head within the limits of ``_limits`` has arrived, with the body its
``Content-Length`` announces, and only then hands it to a thread, as waitress
does. A request not complete within the request timeout is answered 408, and a
connection that sent nothing by then is closed; the time runs from the
connection's opening or from its previous answer. A connection beyond
``max_connections`` is answered 429 at once. In a thread the socket keeps the
request timeout, so a client that stops reading, or stops sending a chunked body,
holds a thread for a bounded time. Closing a connection never waits for the
client, which the stock worker does in its main loop, up to 2 s per connection.
"""

from __future__ import annotations

import functools
import math
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from ._limits import (
    CHUNKED,
    CONTINUE,
    INCOMPLETE,
    MALFORMED,
    MAX_REQUEST_BODY,
    body_length,
    chunked_body_end,
    close_at_once,
    expects_continue,
    head_end,
    head_problem,
    http_answer,
    send_and_close,
    take_backlog,
)

__all__ = ["WholeRequestWorker", "worker_class"]

_RECV_SIZE = 8192
#: What ``_verdict`` says of a request besides a status to refuse it with.
_WAIT = -1
_READY = 0

#: The status of each error gunicorn's parser raises; the first match wins.
_ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    # A bad header the application tried to send is its own fault.
    (http_errors.InvalidResponseHeader, 500),
    (http_errors.InvalidResponseHeaderName, 500),
    (http_errors.ConfigurationProblem, 500),
    (http_errors.LimitRequestLine, 414),
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.ExpectationFailed, 417),
    (http_errors.ParseException, 400),
)


def _peer(addr: Any) -> str:
    return str(addr[0]) if isinstance(addr, tuple) and addr else "a local socket"


def _error_status(exc: BaseException) -> int:
    for kind, status in _ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return 500


class _Connection(TConn):  # type: ignore[misc]
    """A connection whose request the poller gathers before a thread sees it."""

    def __init__(
        self,
        cfg: Any,
        sock: socket.socket,
        client: Any,
        server: Any,
        request_timeout: float,
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.request_timeout = request_timeout
        self.received = bytearray()  # the request so far, head and body
        self.searched = 0
        self.head_end = -1
        self.body_length = 0
        self.chunks_from = 0
        self.deadline = 0.0
        self.data_ready = True  # the stock worker must not wait for bytes itself

    def init(self) -> None:
        """Run in the thread before each request: hand the request to the parser."""
        super().init()
        if self.received:
            self.parser.unreader.unread(bytes(self.received))
            self.received = bytearray()
        self.sock.settimeout(self.request_timeout)

    def set_timeout(self) -> None:
        """Start the time an idle kept-alive connection has for its next request."""
        self.timeout = time.monotonic() + self.request_timeout

    def close(self, graceful: bool = False) -> None:
        """Close without waiting for the client, whatever ``graceful`` asks."""
        close_at_once(self.sock)


class WholeRequestWorker(ThreadWorker):  # type: ignore[misc]
    """The ``gthread`` worker that hands its threads whole requests; see the module.

    ``request_timeout``, ``max_connections`` and ``shutdown_timeout`` are set on a
    subclass made by ``worker_class``, because gunicorn builds its workers from a
    class.
    """

    request_timeout: float
    max_connections: int
    shutdown_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # gunicorn's graceful_timeout is whole seconds (the arbiter kills the
        # worker after it); the worker's own drain keeps to the exact timeout.
        self.cfg.settings["graceful_timeout"].value = self.shutdown_timeout
        self._awaiting: set[_Connection] = set()
        self._next_deadline = math.inf
        self._full = False

    def set_accept_enabled(self, enabled: bool) -> None:
        """Stop or start polling the listeners; at the stop, also close them.

        gunicorn stops polling its listeners when it stops, but keeps them open,
        so connections made during the grace period wait in the backlog and are
        reset at the end. Here the connections already in the backlog are taken
        (they were made before the stop) and the listeners closed, so that later
        ones are refused at once.
        """
        super().set_accept_enabled(enabled)
        if enabled or self.alive:
            return
        for listener in self.sockets:
            if getattr(listener, "sock", listener) is None:
                continue  # closed already
            take_backlog(listener, functools.partial(self.accept, listener))
            listener.close()

    def accept(self, listener: socket.socket) -> None:
        """Take a new connection: wait for its request, or answer 429 past the limit."""
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        if self.nr_conns >= self.max_connections:
            self._refuse_connection(sock)
            return
        if self._full:
            self._full = False
            self.log.info("fewer connections open than the limit: accepting again")

        self.nr_conns += 1
        conn = _Connection(
            self.cfg, sock, client, listener.getsockname(), self.request_timeout
        )
        self._await_request(conn, time.monotonic() + self.request_timeout)

    def enqueue_req(self, conn: _Connection) -> None:
        """Wait for the rest of the next request of ``conn``; some of it was read."""
        self._await_request(conn, time.monotonic() + self.request_timeout)

    def on_client_socket_readable(self, conn: _Connection, client: Any) -> None:
        """A kept-alive connection has bytes: wait for the rest of its request."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_request(conn, conn.timeout)

    def murder_pending(self) -> None:
        """Also end the connections whose request is overdue (called every loop)."""
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_deadline:
            return
        self._next_deadline = math.inf
        for conn in list(self._awaiting):
            if conn.deadline <= now:
                self._stop_awaiting(conn)
                self._end(conn, 408 if conn.received.strip() else None)
            else:
                self._next_deadline = min(self._next_deadline, conn.deadline)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake up for the next request deadline too."""
        until_deadline = max(0.0, self._next_deadline - time.monotonic())
        super().wait_for_and_dispatch_events(min(timeout, until_deadline))

    def handle_error(
        self, req: Any, client: Any, addr: Any, exc: BaseException
    ) -> None:
        """Answer an error found in a thread with the JSON of ``_limits``.

        What the client sent is not repeated in the log or the answer: a header
        may hold the token.
        """
        status = _error_status(exc)
        if status == 500:
            self.log.exception("Error handling request")
        else:
            self.log.info(
                "refused a request from %s with %s (%s)",
                _peer(addr),
                status,
                type(exc).__name__,
            )
        try:
            client.sendall(http_answer(status))
        except OSError:
            self.log.debug("could not send the %s answer", status)

    def _await_request(self, conn: _Connection, deadline: float) -> None:
        if conn.parser is not None:
            conn.received = bytearray(conn.parser.unreader.take_buffered())
        conn.searched = 0
        conn.head_end = -1
        conn.body_length = 0
        conn.deadline = deadline
        conn.sock.setblocking(False)
        if self._settle(conn) or self._receive(conn):  # the bytes may be there
            return
        self._awaiting.add(conn)
        self._next_deadline = min(self._next_deadline, deadline)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn)
        )

    def _on_readable(self, conn: _Connection, sock: Any) -> None:
        self._receive(conn)

    def _receive(self, conn: _Connection) -> bool:
        """Read what has arrived; True once ``conn`` is settled or ended."""
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._stop_awaiting(conn)
            self._end(conn, None)
            return True
        conn.received += data
        return self._settle(conn)

    def _settle(self, conn: _Connection) -> bool:
        """Hand ``conn`` to a thread once its request is complete, or refuse it.

        False while the request is incomplete and within the limits.
        """
        verdict = self._verdict(conn)
        if verdict == _WAIT:
            return False

        self._stop_awaiting(conn)
        if verdict == _READY:
            super().enqueue_req(conn)
        else:
            self.log.info(
                "refused a request from %s with %s", _peer(conn.client), verdict
            )
            self._end(conn, verdict)
        return True

    def _verdict(self, conn: _Connection) -> int:
        """``_READY``, ``_WAIT``, or the status to refuse the request with."""
        if conn.head_end < 0:
            conn.head_end = head_end(conn.received, conn.searched)
            conn.searched = len(conn.received)
            status = head_problem(conn.received, conn.head_end)
            if status is not None:
                return status
            if conn.head_end < 0:
                return _WAIT
            conn.body_length = body_length(conn.received, conn.head_end)
            conn.chunks_from = conn.head_end
            if conn.body_length and expects_continue(conn.received, conn.head_end):
                # gunicorn says it again in the thread; a client skips a second.
                try:
                    conn.sock.send(CONTINUE)
                except OSError:
                    return _READY  # the thread finds out what went wrong

        if conn.body_length == CHUNKED:
            end, conn.chunks_from = chunked_body_end(conn.received, conn.chunks_from)
            sent = (end if end >= 0 else len(conn.received)) - conn.head_end
            if sent > MAX_REQUEST_BODY:
                return 413
            if end == MALFORMED:
                return 400
            return _WAIT if end == INCOMPLETE else _READY
        if conn.body_length > MAX_REQUEST_BODY:
            return 413
        complete = len(conn.received) >= conn.head_end + conn.body_length
        return _READY if complete else _WAIT

    def _stop_awaiting(self, conn: _Connection) -> None:
        if conn in self._awaiting:
            self._awaiting.discard(conn)
            self.poller.unregister(conn.sock)

    def _end(self, conn: _Connection, status: int | None) -> None:
        self.nr_conns -= 1
        if status is None:
            conn.close()
        else:
            send_and_close(conn.sock, status)

    def _refuse_connection(self, sock: socket.socket) -> None:
        if not self._full:
            self._full = True
            self.log.warning(
                "%s connections are open, the limit (CACHECORE_MAX_CONNECTIONS): "
                "new ones are answered 429 until fewer are open",
                self.max_connections,
            )
        send_and_close(sock, 429)


def worker_class(
    request_timeout: float, max_connections: int, shutdown_timeout: float
) -> type[Any]:
    """A ``WholeRequestWorker`` class with these limits, for gunicorn's settings."""
    return type(
        "CachecoreWorker",
        (WholeRequestWorker,),
        {
            "request_timeout": request_timeout,
            "max_connections": max_connections,
            "shutdown_timeout": shutdown_timeout,
        },
    )
