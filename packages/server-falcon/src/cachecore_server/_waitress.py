"""waitress, with the same request limits, timeout and connection limit as gunicorn.

waitress already reads requests in its main loop, so a slow client holds no
thread. What it lacks: it has no limit on the request line or on single header
fields, it stops accepting (and leaves new connections in the backlog) at its
connection limit, and it closes an idle or half-sent connection only after two
minutes. Here the limits of ``_limits`` are applied to every head, a connection
beyond ``max_connections`` is answered 429 at once, and a connection not being
served gets ``request_timeout`` seconds, from its opening or its previous answer,
to send a complete request: then it is answered 408 if it sent part of one, and
closed. Every answer waitress gives on its own is the JSON of ``_limits``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.trigger import trigger
from waitress.utilities import Error

from ._limits import (
    MAX_REQUEST_BODY,
    MAX_REQUEST_HEAD,
    answer_body,
    answer_headers,
    answer_reason,
    answered_status,
    discard_arrived,
    head_problem,
    http_answer,
    send_and_close,
    take_backlog,
)

__all__ = ["GracefulLoop", "create_server"]

logger = logging.getLogger(__name__)

#: How often, at most, the main loop looks for overdue connections.
_CHECK_INTERVAL = 0.1
_PLACEHOLDER_LINE = b"GET / HTTP/1.1\r\n"


class _Refused(Error):  # type: ignore[misc]
    """A request refused for breaking a limit of ``_limits``."""

    def __init__(self, status: int) -> None:
        super().__init__("")
        self.code = status
        self.reason = answer_reason(status)


class _Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser, also judging each head by ``_limits.head_problem``."""

    def received(self, data: bytes) -> int:
        """Take bytes of the request; refuse a head that breaks a limit early."""
        consumed = int(super().received(data))
        if not (self.completed or self.headers_finished):
            status = head_problem(self.header_plus, -1)
            if status is not None:
                self._refuse(status)
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        """Parse a complete head, unless it breaks a limit."""
        status = head_problem(header_plus, len(header_plus))
        if status is None:
            super().parse_header(header_plus)
        else:
            self._refuse(status)

    def _refuse(self, status: int) -> None:
        # As waitress does for its own limit: a request to answer, with an error.
        HTTPRequestParser.parse_header(self, _PLACEHOLDER_LINE)
        self.error = _Refused(status)
        self.completed = True


class _ErrorTask(ErrorTask):  # type: ignore[misc]
    """Answers each error with the JSON of ``_limits``, not waitress's text."""

    def execute(self) -> None:
        """Write the answer and close the connection after it."""
        status = answered_status(int(self.request.error.code))
        if status < 500:
            logger.info(
                "refused a request from %s with %s", self.channel.addr[0], status
            )
        body = answer_body(status)
        self.version = "1.1"  # as gunicorn answers, whatever the client sent
        self.status = f"{status} {answer_reason(status)}"
        self.response_headers.extend(answer_headers(status))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Task(WSGITask):  # type: ignore[misc]
    """waitress's task, but for a path that starts with several slashes.

    waitress makes ``//v1/x`` the ``PATH_INFO`` ``/v1/x``; gunicorn and granian
    keep the slashes, and the app answers such a path 404 rather than route it.
    """

    def get_environment(self) -> dict[str, Any]:
        """The environ, with the path's leading slashes as they were sent."""
        environ: dict[str, Any] = super().get_environment()
        path: str = self.request.path
        if path.startswith("//") and not self.channel.server.adj.url_prefix:
            environ["PATH_INFO"] = path
        return environ


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection with a deadline for its next request while it is not served."""

    parser_class = _Parser
    task_class = _Task
    error_task_class = _ErrorTask
    will_close: bool
    close_when_flushed: bool

    def __init__(self, server: _Server, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.draining = False  # set when the server stops: close after answering
        self.deadline: float | None = time.monotonic() + server.request_timeout

    def service(self) -> None:
        """Serve the requests received; the deadline starts again after them."""
        self.deadline = None
        try:
            super().service()
        finally:
            self.deadline = time.monotonic() + self.server.request_timeout
            if self.draining:
                with self.requests_lock:
                    self.close_when_flushed = True  # the server is stopping

    def is_overdue(self, now: float) -> bool:
        """Whether the client is late with its next request, or with reading."""
        if self.requests or self.will_close:
            return False  # requests is read first: only another thread empties it
        deadline = self.deadline
        return deadline is not None and now >= deadline

    def handle_close(self) -> None:
        """Close, without resetting the connection under the last answer."""
        if self.socket is not None:
            discard_arrived(self.socket)
        super().handle_close()

    def time_out(self) -> None:
        """Answer 408 if part of a request arrived, and close.

        A client that has not read its last answer by the next deadline is cut
        off, so that it does not keep its connection open forever.
        """
        request = self.request
        if self.close_when_flushed or not (
            request is not None
            and (request.headers_finished or request.header_plus.strip())
        ):
            self.will_close = True
            return
        answer = http_answer(408)
        with self.outbuf_lock:
            self.outbufs[-1].append(answer)
            self.current_outbuf_count += len(answer)
            self.total_outbufs_len += len(answer)
        self.close_when_flushed = True
        self.deadline = time.monotonic() + self.server.request_timeout


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """A listening socket that applies the timeout and the connection limit."""

    channel_class = _Channel

    def __init__(
        self, *args: Any, request_timeout: float, max_connections: int, **kwargs: Any
    ) -> None:
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._next_check = 0.0
        self._full = False
        super().__init__(*args, **kwargs)

    def readable(self) -> bool:
        """Called every loop: time out overdue connections; always accept.

        This replaces waitress's own upkeep, which closes idle connections after
        ``channel_timeout`` and stops accepting at ``connection_limit``.
        """
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + _CHECK_INTERVAL
            for channel in list(self.active_channels.values()):
                if channel.is_overdue(now):
                    channel.time_out()
        return bool(self.accepting)

    def handle_accept(self) -> None:
        """Take a new connection, or answer it 429 when the limit is reached."""
        open_now = sum(isinstance(d, HTTPChannel) for d in self._map.values())
        if open_now < self.max_connections:
            if self._full:
                self._full = False
                logger.info("fewer connections open than the limit: accepting again")
            super().handle_accept()
            return

        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        if not self._full:
            self._full = True
            logger.warning(
                "%s connections are open, the limit (CACHECORE_MAX_CONNECTIONS): "
                "new ones are answered 429 until fewer are open",
                self.max_connections,
            )
        send_and_close(accepted[0], 429)


def create_server(
    app: Any,
    *,
    request_timeout: float,
    max_connections: int,
    sockets: Sequence[socket.socket] = (),
    **adjustments: Any,
) -> Any:
    """Like ``waitress.create_server`` for TCP, with the servers of this module.

    ``sockets`` are listening sockets bound already, served instead of ``listen``.
    """
    # waitress's own head limit sits above the one of _limits, which then decides;
    # waitress refuses a body of its limit or more, _limits one over it.
    adjustments.setdefault("max_request_header_size", 2 * MAX_REQUEST_HEAD)
    adjustments.setdefault("max_request_body_size", MAX_REQUEST_BODY + 1)
    adj = Adjustments(**adjustments)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict[int, Any] = {}
    servers = [
        _Server(
            app,
            socket_map,
            dispatcher=dispatcher,
            adj=adj,
            sockinfo=sockinfo,
            request_timeout=request_timeout,
            max_connections=max_connections,
        )
        for sockinfo in ([] if sockets else adj.listen)
    ]
    for sock in sockets:
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        servers.append(
            _Server(
                app,
                socket_map,
                _sock=sock,
                dispatcher=dispatcher,
                adj=adj,
                sockinfo=sockinfo,
                bind_socket=False,
                request_timeout=request_timeout,
                max_connections=max_connections,
            )
        )
    if len(servers) == 1:
        return servers[0]
    return MultiSocketServer(
        socket_map,
        adj,
        [(s.effective_host, s.effective_port) for s in servers],
        dispatcher,
        log_info=servers[-1].log_info,
    )


#: At a stop, how long an open connection may take to send a request it has under
#: way (it is answered, then closed); after that the idle ones are closed.
_FRESH_GRACE = 0.5


class GracefulLoop:
    """Runs a server of ``create_server`` until ``stop``, which drains it first.

    ``stop`` closes the listening sockets at once, so that new connections are
    refused; lets every request received finish and its answer be sent; closes
    idle connections; and returns when none is left or its time is up.
    """

    #: Longest wait of the loop for a socket; bounds how late a stop is seen.
    _POLL = 0.05

    def __init__(self, server: Any) -> None:
        self._server = server
        self._map: dict[int, Any] = (
            server.map if hasattr(server, "map") else server._map
        )
        self._dispatcher = server.task_dispatcher
        self._stop_by: float | None = None
        self._listening = True
        self._drain_started = 0.0
        self._finished = threading.Event()
        self.drained = False

    def run(self) -> None:
        """Serve until stopped; call it in the thread that owns the server."""
        try:
            while True:
                wasyncore.loop(timeout=self._POLL, map=self._map, count=1)
                if self._stop_by is not None and self._drain_step():
                    break
        finally:
            # Every connection and listening socket closes; the wake-up pipes
            # stay open, because a request thread still running may write to
            # its pipe when it ends, and a closed descriptor may by then be
            # another socket's.
            for dispatcher in list(self._map.values()):
                if isinstance(dispatcher, TcpWSGIServer):
                    wasyncore.dispatcher.close(dispatcher)
                elif not isinstance(dispatcher, trigger):
                    dispatcher.close()
            self._finished.set()

    def _drain_step(self) -> bool:
        """Close what is idle; whether the loop may end (loop thread only)."""
        if self._listening:
            self._listening = False
            self._drain_started = time.monotonic()
            for dispatcher in list(self._map.values()):
                if isinstance(dispatcher, TcpWSGIServer):
                    take_backlog(dispatcher.socket, dispatcher.handle_accept)
                    # Only the listening socket: the server's close() would also
                    # close the pipe that finished requests wake the loop with.
                    wasyncore.dispatcher.close(dispatcher)
        channels = [d for d in self._map.values() if isinstance(d, HTTPChannel)]
        # Every connection open at the stop gets a moment to send the request it
        # may have under way, which is answered and the connection then closed;
        # after that, the idle ones are closed.
        lingering = time.monotonic() - self._drain_started < _FRESH_GRACE
        for channel in channels:
            channel.draining = True
            if channel.requests or channel.total_outbufs_len:
                continue
            if not lingering and channel.request is None:
                channel.will_close = True  # idle: closed on its next turn
        busy = len(channels)
        assert self._stop_by is not None
        if busy and time.monotonic() < self._stop_by:
            return False
        if busy:
            logger.warning("stopping with %d connection(s) still being served", busy)
        else:
            self.drained = True
        return True

    def request_stop(self, timeout: float) -> None:
        """Start the stop, to end within ``timeout`` seconds; returns at once.

        Safe in a signal handler: it only sets the time the loop stops by.
        """
        if self._stop_by is None:
            self._stop_by = time.monotonic() + timeout

    def stop(self, timeout: float) -> bool:
        """Drain and stop within ``timeout`` seconds; whether all requests finished."""
        self.request_stop(timeout)
        self._finished.wait(timeout + 1.0)
        self._dispatcher.shutdown(cancel_pending=True, timeout=0.1)
        return self.drained
