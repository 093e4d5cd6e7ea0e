"""An emulator of the AWS Lambda Extensions API (version 2020-01-01), for tests.

ExtensionsAPI is a real HTTP server on 127.0.0.1 (a free port), run inside the test
process. A test starts an extension as a subprocess with
``AWS_LAMBDA_RUNTIME_API=api.address`` and plays the part of Lambda around it::

    with ExtensionsAPI() as api:
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address}
        process = subprocess.Popen([...], env=env)
        registration = api.wait_registered(timeout=5)
        api.wait_waiting(timeout=5)         # init done: parked in event/next
        request_id = api.invoke()
        api.wait_waiting(timeout=5)         # the extension is done with that invoke
        api.shutdown("spindown")

The four endpoints, their headers, bodies and status codes follow the AWS Lambda
developer guide ("Using the Lambda Extensions API to create extensions",
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html). Where the
guide is silent (which error type, which status for which mistake, which state
transitions are allowed) the emulator follows AWS's own open-source Runtime Interface
Emulator (https://github.com/aws/aws-lambda-runtime-interface-emulator, lambda/rapi
and lambda/core), whose error types are ``Extension.*`` names such as
``Extension.UnknownExtensionIdentifier``. Every error answer is JSON
``{"errorMessage": ..., "errorType": ...}``.

Notable behaviour taken from there rather than from the guide:

* Every refusal of a client mistake is 403, even a body that is not JSON or an
  unknown event type (``InvalidRequestFormat``, ``Extension.InvalidEventType``). The
  guide lists 400 as a possible answer without saying when; pass
  ``bad_request_status=400`` to get 400 for those two.
* The register body is decoded as Go's encoding/json would: ``null`` and ``{}`` mean
  no events, the ``events`` key matches case-insensitively, other keys are ignored.
* An extension whose name is not among ``extension_names`` (when given) is taken for
  an internal extension, as Lambda does with a name that is no file in
  /opt/extensions: it may not subscribe to SHUTDOWN.
* init/error is accepted only before the extension's first event/next; exit/error
  at any time after registration. The guide says no call succeeds after a report;
  Lambda's state machine accepts a second report of the same kind again (202), and so
  does the emulator. Every other call after a report is refused with
  ``Extension.InvalidExtensionState``.
* ``shutdownReason`` is lower case (spindown, timeout, failure), as Lambda sends it;
  the guide names the values in capitals.

Events queue per extension: one queued while the extension is not parked in
event/next is answered on its next call, in order. INVOKE goes to every extension
subscribed to INVOKE, SHUTDOWN to every extension subscribed to SHUTDOWN; nothing is
queued after SHUTDOWN. An extension that calls event/next again after its SHUTDOWN
stays parked, as the real one would be until it is killed.

Registration is open during init: it closes when the first event is queued, when
``close_registration()`` is called, or when every expected extension (all of
``extension_names``, or every one registered so far) has called event/next.

``close()`` answers every parked event/next and held register with 500
(``InternalServerError``, as Lambda's "container error: exit promptly"), drops every
connection and joins every thread of the emulator, or raises RuntimeError.
"""

from __future__ import annotations

import http.server
import json
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from types import TracebackType
from typing import Any

__all__ = [
    "API_VERSION",
    "DeliveredEvent",
    "ErrorReport",
    "ExtensionsAPI",
    "RecordedRequest",
    "Registration",
]

HOST = "127.0.0.1"
API_VERSION = "2020-01-01"
REGISTER_PATH = f"/{API_VERSION}/extension/register"
NEXT_PATH = f"/{API_VERSION}/extension/event/next"
INIT_ERROR_PATH = f"/{API_VERSION}/extension/init/error"
EXIT_ERROR_PATH = f"/{API_VERSION}/extension/exit/error"

NAME_HEADER = "Lambda-Extension-Name"
ID_HEADER = "Lambda-Extension-Identifier"
EVENT_ID_HEADER = "Lambda-Extension-Event-Identifier"
ERROR_TYPE_HEADER = "Lambda-Extension-Function-Error-Type"
ACCEPT_FEATURE_HEADER = "Lambda-Extension-Accept-Feature"

EVENT_TYPES = ("INVOKE", "SHUTDOWN")
SHUTDOWN_REASONS = ("spindown", "timeout", "failure")
MAX_EXTENSIONS = 10  # "You can register up to 10 extensions for a function."
SHUTDOWN_DEADLINE_MS = 2000  # the Shutdown phase with external extensions
MAX_BODY = 1 << 20
STOP_TIMEOUT = 5.0
_POLL_INTERVAL = 0.01  # how soon close() stops the accept loop
_PARKED_GRACE = 1.0  # close(): time for parked calls to send their 500

# States of one extension, named as in Lambda's own state machine.
_REGISTERED = "Registered"  # registered, event/next not called yet
_READY = "Ready"  # parked in event/next
_RUNNING = "Running"  # has an event, not back in event/next
_INIT_ERROR = "InitError"
_EXIT_ERROR = "ExitError"
_ERRORED = (_INIT_ERROR, _EXIT_ERROR)
_NOT_ALLOWED = "State transition is not allowed"


def _epoch_ms() -> int:
    return time.time_ns() // 1_000_000


def _trace_value() -> str:
    """An X-Ray trace header value of the form Lambda sends with INVOKE."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=1"


@dataclass
class RecordedRequest:
    """One request to the emulator, as it arrived, and when it was answered."""

    method: str
    path: str
    headers: Message
    body: bytes
    time: float  # time.monotonic() at arrival
    status: int | None = None  # None until answered
    answered: float | None = None  # time.monotonic() when answered


@dataclass
class Registration:
    """One successful POST /extension/register."""

    name: str
    identifier: str
    events: list[str]
    headers: Message
    body: bytes
    arrived: float  # time.monotonic() when the request arrived
    answered: float  # time.monotonic() when it was answered 200
    features: list[str] = field(default_factory=list)  # Accept-Feature, accepted
    internal: bool = False  # name not among extension_names


@dataclass
class ErrorReport:
    """One accepted POST /extension/init/error or /extension/exit/error."""

    kind: str  # "init" or "exit"
    identifier: str
    name: str
    error_type: str  # the Lambda-Extension-Function-Error-Type header
    headers: Message
    body: bytes
    time: float  # time.monotonic() at arrival

    @property
    def json(self) -> Any:
        """The body decoded as JSON; None when empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class DeliveredEvent:
    """One event answered to an extension's GET /extension/event/next."""

    identifier: str
    name: str
    event_id: str  # the Lambda-Extension-Event-Identifier header
    event: dict[str, Any]
    time: float  # time.monotonic() when taken from the queue


@dataclass
class _Extension:
    registration: Registration
    state: str = _REGISTERED
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    waiting: bool = False  # a GET event/next of it is parked
    next_calls: int = 0
    shutdown_received: bool = False
    shutdown_done: float | None = None  # first event/next after SHUTDOWN

    @property
    def events(self) -> list[str]:
        return self.registration.events


class _Refusal(Exception):
    """An error answer: status, errorType, errorMessage."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class ExtensionsAPI:
    """The Lambda Extensions API for extension processes under test.

    Use as a context manager, or call ``start()`` and ``close()``. The function's
    name, version, handler and account are what register answers; the ARN of
    INVOKE events is made of function_name, region and account_id.
    ``extension_names``: the file names Lambda would find in /opt/extensions (None:
    any name is one). ``function_timeout_ms``: the default deadline of an INVOKE,
    from the time it is queued.
    """

    def __init__(
        self,
        *,
        function_name: str = "cachecore-test-function",
        function_version: str = "$LATEST",
        handler: str = "lambda_function.lambda_handler",
        account_id: str = "123456789012",
        region: str = "us-east-1",
        extension_names: Iterable[str] | None = None,
        function_timeout_ms: int = 3000,
        bad_request_status: int = 403,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.handler = handler
        self.account_id = account_id
        self.region = region
        self.extension_names = (
            None if extension_names is None else frozenset(extension_names)
        )
        self.function_timeout_ms = function_timeout_ms
        self.bad_request_status = bad_request_status

        self._cond = threading.Condition()
        self._extensions: dict[str, _Extension] = {}  # by identifier, in order
        self._requests: list[RecordedRequest] = []
        self._registrations: list[Registration] = []
        self._init_errors: list[ErrorReport] = []
        self._exit_errors: list[ErrorReport] = []
        self._deliveries: list[DeliveredEvent] = []
        self._held = False
        self._registration_open = True
        self._shutdown_queued = False
        self._closed = False
        self._blocked = 0  # handlers in a long wait, until they have answered

        self._conn_lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._address = ""

    # -- life ---------------------------------------------------------------------

    def start(self) -> ExtensionsAPI:
        """Listen on a free port of 127.0.0.1 and serve in a thread of its own.

        An emulator starts once: after ``close()`` make a new one.
        """
        if self._server is not None or self._closed:
            raise RuntimeError("an ExtensionsAPI starts only once")
        server = _Server(self)
        port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"lambda-emulator-{port}-serve",
            daemon=True,
        )
        self._server, self._serve_thread = server, thread
        self._address = f"{HOST}:{port}"
        thread.start()
        return self

    def close(self) -> None:
        """Answer parked calls with 500, stop serving and join every thread.

        Safe to call twice. Raises RuntimeError if a thread of the emulator is
        still alive after STOP_TIMEOUT seconds.
        """
        server, serve_thread = self._server, self._serve_thread
        deadline = time.monotonic() + STOP_TIMEOUT
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            grace = min(deadline, time.monotonic() + _PARKED_GRACE)
            while self._blocked and time.monotonic() < grace:
                self._cond.wait(_POLL_INTERVAL)
        if server is None or serve_thread is None:
            return
        server.shutdown()
        with self._conn_lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread reading it
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        serve_thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._serve_thread = None
        alive = [t.name for t in [*threads, serve_thread] if t.is_alive()]
        if alive:
            raise RuntimeError(f"emulator threads still running after close: {alive}")

    def __enter__(self) -> ExtensionsAPI:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the value of AWS_LAMBDA_RUNTIME_API."""
        if not self._address:
            raise RuntimeError("the emulator is not started")
        return self._address

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address}"

    @property
    def function_arn(self) -> str:
        """The invokedFunctionArn of INVOKE events."""
        return (
            f"arn:aws:lambda:{self.region}:{self.account_id}"
            f":function:{self.function_name}"
        )

    # -- what happened ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in order of arrival (a copy of the list)."""
        with self._cond:
            return list(self._requests)

    @property
    def registrations(self) -> list[Registration]:
        """Every successful registration so far."""
        with self._cond:
            return list(self._registrations)

    @property
    def init_errors(self) -> list[ErrorReport]:
        """Every accepted init/error report so far."""
        with self._cond:
            return list(self._init_errors)

    @property
    def exit_errors(self) -> list[ErrorReport]:
        """Every accepted exit/error report so far."""
        with self._cond:
            return list(self._exit_errors)

    @property
    def deliveries(self) -> list[DeliveredEvent]:
        """Every event answered to an event/next so far."""
        with self._cond:
            return list(self._deliveries)

    @property
    def state(self) -> str:
        """The environment as Lambda would see it.

        ``init`` until every expected extension has registered and called
        event/next; then ``ready`` while all are parked with nothing queued, and
        ``invoking`` while an INVOKE is queued or being handled; ``shutting_down``
        once SHUTDOWN is queued; ``errored`` once an extension reported an init or
        exit error; ``closed`` after close().
        """
        with self._cond:
            return self._state_locked()

    def extension_state(self, identifier: str) -> str:
        """The state of one extension: Registered, Ready, Running, InitError or
        ExitError (Lambda's names)."""
        with self._cond:
            return self._extensions[identifier].state

    # -- driving ------------------------------------------------------------------

    def hold_register(self) -> None:
        """Make register requests wait, unanswered, until ``release_register()``."""
        with self._cond:
            self._held = True

    def release_register(self) -> None:
        """Answer the held register requests, and later ones at once."""
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def close_registration(self) -> None:
        """End the Extension init phase: later registrations are refused."""
        with self._cond:
            self._registration_open = False

    def invoke(
        self, request_id: str | None = None, deadline_ms: int | None = None
    ) -> str:
        """Queue an INVOKE for every extension subscribed to it; its request id.

        ``deadline_ms``: epoch milliseconds; by default now + function_timeout_ms.
        """
        request_id = request_id if request_id is not None else str(uuid.uuid4())
        if deadline_ms is None:
            deadline_ms = _epoch_ms() + self.function_timeout_ms
        event = {
            "eventType": "INVOKE",
            "deadlineMs": deadline_ms,
            "requestId": request_id,
            "invokedFunctionArn": self.function_arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": _trace_value()},
        }
        self._queue(event)
        return request_id

    def shutdown(
        self, reason: str = "spindown", deadline_ms: int | None = None
    ) -> None:
        """Queue SHUTDOWN for every extension subscribed to it; the last event.

        ``reason``: spindown, timeout or failure. ``deadline_ms``: epoch
        milliseconds; by default now + 2000 (the Shutdown phase's limit).
        """
        if reason not in SHUTDOWN_REASONS:
            raise ValueError(f"shutdown reason {reason!r} not in {SHUTDOWN_REASONS}")
        if deadline_ms is None:
            deadline_ms = _epoch_ms() + SHUTDOWN_DEADLINE_MS
        self._queue(
            {
                "eventType": "SHUTDOWN",
                "shutdownReason": reason,
                "deadlineMs": deadline_ms,
            }
        )

    def _queue(self, event: dict[str, Any]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the emulator is closed")
            if self._shutdown_queued:
                raise RuntimeError("no event is sent after SHUTDOWN")
            kind = event["eventType"]
            self._registration_open = False
            self._shutdown_queued = kind == "SHUTDOWN"
            for ext in self._extensions.values():
                if kind in ext.events and ext.state not in _ERRORED:
                    ext.queue.append(dict(event))
            self._cond.notify_all()

    # -- waiting ------------------------------------------------------------------

    def _wait_for(self, what: str, timeout: float, found: Callable[[], Any]) -> Any:
        """The first true value of found(), called under the lock; or TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = found()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} within {timeout}s")
                self._cond.wait(min(left, 0.5))

    def wait_registered(self, timeout: float, name: str | None = None) -> Registration:
        """The first successful registration (of that name), once answered."""

        def found() -> Registration | None:
            for registration in self._registrations:
                if name is None or registration.name == name:
                    return registration
            return None

        what = "no extension registered" if name is None else f"{name!r} not registered"
        return self._wait_for(what, timeout, found)  # type: ignore[no-any-return]

    def wait_request(
        self, path: str, timeout: float, *, method: str | None = None, nth: int = 1
    ) -> RecordedRequest:
        """The nth request to that path (and method), as soon as it arrives."""

        def found() -> RecordedRequest | None:
            seen = [
                r
                for r in self._requests
                if r.path.split("?", 1)[0] == path
                and (method is None or r.method == method)
            ]
            return seen[nth - 1] if len(seen) >= nth else None

        return self._wait_for(f"no request #{nth} to {path}", timeout, found)  # type: ignore[no-any-return]

    def wait_waiting(self, timeout: float, identifier: str | None = None) -> None:
        """Until the extension (by default: every registered one not in error) is
        parked in event/next with no event queued for it."""

        def found() -> bool:
            if identifier is not None:
                ext = self._extensions.get(identifier)
                targets = [] if ext is None else [ext]
            else:
                targets = [
                    e for e in self._extensions.values() if e.state not in _ERRORED
                ]
            return bool(targets) and all(e.waiting and not e.queue for e in targets)

        self._wait_for("no extension waiting in event/next", timeout, found)

    def wait_init_error(self, timeout: float) -> ErrorReport:
        """The first accepted init/error report."""
        return self._wait_for(  # type: ignore[no-any-return]
            "no init/error", timeout, lambda: self._init_errors and self._init_errors[0]
        )

    def wait_exit_error(self, timeout: float) -> ErrorReport:
        """The first accepted exit/error report."""
        return self._wait_for(  # type: ignore[no-any-return]
            "no exit/error", timeout, lambda: self._exit_errors and self._exit_errors[0]
        )

    # -- state (under the lock) ---------------------------------------------------

    def _init_done_locked(self) -> bool:
        exts = list(self._extensions.values())
        if not exts or any(e.next_calls == 0 for e in exts):
            return False
        if self.extension_names is not None:
            names = {e.registration.name for e in exts}
            return self.extension_names <= names
        return True

    def _state_locked(self) -> str:
        exts = list(self._extensions.values())
        if self._closed:
            return "closed"
        if any(e.state in _ERRORED for e in exts):
            return "errored"
        if self._shutdown_queued:
            return "shutting_down"
        if not self._init_done_locked():
            return "init"
        if any(e.queue or e.state == _RUNNING for e in exts):
            return "invoking"
        return "ready"

    # -- serving ------------------------------------------------------------------

    def _adopt(self, request: socket.socket, thread: threading.Thread) -> bool:
        with self._conn_lock:
            if self._closed:
                return False
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
            self._sockets.add(request)
            thread.start()
            return True

    def _drop(self, request: socket.socket) -> None:
        with self._conn_lock:
            self._sockets.discard(request)

    def _dispatch(self, h: _Handler) -> None:
        body = h.read_body()
        if body is None:
            return
        record = RecordedRequest(h.command, h.path, h.headers, body, time.monotonic())
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()
        path = h.path.split("?", 1)[0]
        routes: dict[str, tuple[str, Callable[[_Handler, RecordedRequest], None]]] = {
            REGISTER_PATH: ("POST", self._register),
            NEXT_PATH: ("GET", self._next),
            INIT_ERROR_PATH: ("POST", self._init_error),
            EXIT_ERROR_PATH: ("POST", self._exit_error),
        }
        try:
            if self._closed:
                raise _Refusal(500, "InternalServerError", "Internal Server Error")
            route = routes.get(path)
            if route is None:  # as Lambda's router (chi) answers
                self._reply(h, record, 404, b"404 page not found\n", "text/plain")
                return
            if h.command != route[0]:
                self._reply(h, record, 405, b"", None, [("Allow", route[0])])
                return
            route[1](h, record)
        except _Refusal as refusal:
            self._refuse(h, record, refusal)

    def _reply(
        self,
        h: _Handler,
        record: RecordedRequest,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        with self._cond:
            record.status, record.answered = status, time.monotonic()
            closing = self._closed
        if closing:
            h.close_connection = True
        h.send_response_only(status)
        if content_type is not None:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            h.send_header(name, value)
        if closing:
            h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
        h.wfile.flush()

    def _reply_json(
        self,
        h: _Handler,
        record: RecordedRequest,
        status: int,
        document: Any,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        # Lambda renders with Go's json.Encoder, which ends the body with a newline.
        body = (json.dumps(document) + "\n").encode()
        self._reply(h, record, status, body, "application/json", headers)

    def _refuse(self, h: _Handler, record: RecordedRequest, refusal: _Refusal) -> None:
        document = {"errorMessage": refusal.message, "errorType": refusal.error_type}
        self._reply_json(h, record, refusal.status, document)

    def _long_wait(self, done: Callable[[], bool]) -> None:
        """Wait, under the lock, until done() or close(); counted in _blocked.

        The caller must call ``_unblock()`` once it has answered.
        """
        self._blocked += 1
        while not (done() or self._closed):
            self._cond.wait(0.5)  # close() notifies; the timeout only bounds a wait

    def _unblock(self) -> None:
        with self._cond:
            self._blocked -= 1
            self._cond.notify_all()

    # -- register -----------------------------------------------------------------

    def _register(self, h: _Handler, record: RecordedRequest) -> None:
        with self._cond:
            blocked = self._held
            if blocked:
                self._long_wait(lambda: not self._held)
        try:
            self._register_now(h, record)
        except _Refusal as refusal:  # answered before close() may drop the socket
            self._refuse(h, record, refusal)
        finally:
            if blocked:
                self._unblock()

    def _register_now(self, h: _Handler, record: RecordedRequest) -> None:
        if self._closed:
            raise _Refusal(500, "InternalServerError", "Internal Server Error")
        name = h.headers.get(NAME_HEADER, "")
        if not name:
            raise _Refusal(
                403, "Extension.InvalidExtensionName", "Empty extension name"
            )
        try:
            events = _parse_register(record.body)
        except ValueError as error:
            status = self.bad_request_status
            raise _Refusal(status, "InvalidRequestFormat", str(error)) from None
        internal = self.extension_names is not None and name not in self.extension_names
        for event in events:
            if event not in EVENT_TYPES or (internal and event == "SHUTDOWN"):
                raise _Refusal(
                    self.bad_request_status,
                    "Extension.InvalidEventType",
                    f"{event}: ErrorInvalidEventType",
                )
        features = [
            feature.strip()
            for feature in h.headers.get(ACCEPT_FEATURE_HEADER, "").split(",")
            if feature.strip() == "accountId"  # the one feature there is
        ]
        identifier = str(uuid.uuid4())
        with self._cond:
            if any(e.registration.name == name for e in self._extensions.values()):
                message = (
                    f"State transition from {_REGISTERED} to {_REGISTERED} failed"
                    f" for extension {name}. Error: {_NOT_ALLOWED}"
                )
                raise _Refusal(403, "Extension.InvalidExtensionState", message)
            if not self._registration_open:
                raise _Refusal(
                    403,
                    "Extension.RegistrationClosed",
                    "Extension registration closed already",
                )
            if len(self._extensions) >= MAX_EXTENSIONS:
                raise _Refusal(
                    403,
                    "Extension.TooManyExtensions",
                    f"Extension limit ({MAX_EXTENSIONS}) reached",
                )
            registration = Registration(
                name=name,
                identifier=identifier,
                events=list(events),
                headers=h.headers,
                body=record.body,
                arrived=record.time,
                answered=time.monotonic(),
                features=features,
                internal=internal,
            )
            self._extensions[identifier] = _Extension(registration)
            self._registrations.append(registration)
            self._cond.notify_all()
        answer: dict[str, str] = {}
        if features:
            answer["accountId"] = self.account_id
        answer["functionName"] = self.function_name
        answer["functionVersion"] = self.function_version
        answer["handler"] = self.handler
        self._reply_json(h, record, 200, answer, [(ID_HEADER, identifier)])

    # -- event/next ---------------------------------------------------------------

    def _identify(self, h: _Handler, *, error_type_required: bool) -> _Extension:
        """The extension named by the identifier header, or a _Refusal."""
        raw = h.headers.get(ID_HEADER, "")
        if not raw:
            raise _Refusal(
                403,
                "Extension.MissingExtensionIdentifier",
                f"Missing {ID_HEADER} header",
            )
        try:
            identifier = str(uuid.UUID(raw))
        except ValueError:
            raise _Refusal(
                403, "Extension.InvalidExtensionIdentifier", f"Invalid {ID_HEADER}"
            ) from None
        if error_type_required and not h.headers.get(ERROR_TYPE_HEADER):
            raise _Refusal(
                403, "Extension.MissingHeader", f"{ERROR_TYPE_HEADER} not found"
            )
        with self._cond:
            ext = self._extensions.get(identifier)
        if ext is None:
            message = (
                f"Unknown extension {identifier}"
                if not error_type_required
                else f"Unknown {ID_HEADER}"
            )
            raise _Refusal(403, "Extension.UnknownExtensionIdentifier", message)
        return ext

    def _next(self, h: _Handler, record: RecordedRequest) -> None:
        ext = self._identify(h, error_type_required=False)
        identifier = ext.registration.identifier
        with self._cond:
            if ext.state in _ERRORED or ext.waiting:
                message = (
                    f"State transition from {ext.state} to {_READY} failed for"
                    f" extension {identifier}. Error: {_NOT_ALLOWED}"
                )
                raise _Refusal(403, "Extension.InvalidExtensionState", message)
            ext.next_calls += 1
            if ext.shutdown_received and ext.shutdown_done is None:
                ext.shutdown_done = record.time
            ext.state, ext.waiting = _READY, True
            if self._init_done_locked():
                self._registration_open = False
            self._cond.notify_all()
            try:
                self._long_wait(lambda: bool(ext.queue) and not ext.shutdown_done)
                ext.waiting = False
                if self._closed:
                    event = None
                else:
                    event = ext.queue.popleft()
                    ext.state = _RUNNING
                    ext.shutdown_received |= event["eventType"] == "SHUTDOWN"
                    event_id = str(uuid.uuid4())
                    self._deliveries.append(
                        DeliveredEvent(
                            identifier,
                            ext.registration.name,
                            event_id,
                            event,
                            time.monotonic(),
                        )
                    )
                self._cond.notify_all()
            except BaseException:
                self._blocked -= 1
                raise
        try:
            if event is None:  # closed: answered before close() drops the socket
                closing = _Refusal(500, "InternalServerError", "Internal Server Error")
                self._refuse(h, record, closing)
                return
            # Lambda sends Lambda-Extension-Event-Identifier with INVOKE; the guide
            # lists Lambda-Extension-Identifier as the response header. Both are sent
            # with every event here (Lambda's own emulator sends neither header with
            # SHUTDOWN), and no trailing newline, as Lambda writes events.
            body = json.dumps(event).encode()
            headers = [(EVENT_ID_HEADER, event_id), (ID_HEADER, identifier)]
            self._reply(h, record, 200, body, "application/json", headers)
        finally:
            self._unblock()

    # -- init/error and exit/error ------------------------------------------------

    def _init_error(self, h: _Handler, record: RecordedRequest) -> None:
        # Lambda accepts init/error only from an extension that has registered and
        # not yet called event/next (or is already in InitError).
        self._report(h, record, "init", (_REGISTERED, _INIT_ERROR), _INIT_ERROR)

    def _exit_error(self, h: _Handler, record: RecordedRequest) -> None:
        # exit/error is accepted at any time after registration, until an init error.
        allowed = (_REGISTERED, _READY, _RUNNING, _EXIT_ERROR)
        self._report(h, record, "exit", allowed, _EXIT_ERROR)

    def _report(
        self,
        h: _Handler,
        record: RecordedRequest,
        kind: str,
        allowed: tuple[str, ...],
        target: str,
    ) -> None:
        ext = self._identify(h, error_type_required=True)
        identifier = ext.registration.identifier
        with self._cond:
            if ext.state not in allowed:
                message = (
                    f"State transition from {ext.state} to {target} failed for"
                    f" extension {identifier}. Error: {_NOT_ALLOWED}"
                )
                raise _Refusal(403, "Extension.InvalidExtensionState", message)
            ext.state = target
            ext.queue.clear()
            report = ErrorReport(
                kind=kind,
                identifier=identifier,
                name=ext.registration.name,
                error_type=h.headers.get(ERROR_TYPE_HEADER, ""),
                headers=h.headers,
                body=record.body,
                time=record.time,
            )
            (self._init_errors if kind == "init" else self._exit_errors).append(report)
            self._cond.notify_all()
        self._reply_json(h, record, 202, {"status": "OK"}, [(ID_HEADER, identifier)])


def _parse_register(body: bytes) -> list[str]:
    """The events of a register body, decoded as Go's encoding/json would."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        if not body.strip():
            raise ValueError("unexpected end of JSON input") from None
        raise ValueError(f"invalid JSON: {error}") from None
    if document is None:
        return []
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise ValueError(f"json: cannot unmarshal {kind} into Go value of type struct")
    keys = _field(document, "configurationKeys")
    if keys:
        raise ValueError(
            "configurationKeys are deprecated; use environment variables instead"
        )
    events = _field(document, "events")
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValueError(
            "json: cannot unmarshal events into Go value of type []core.Event"
        )
    return events


def _field(document: dict[str, Any], name: str) -> Any:
    """A JSON object's field as Go matches it: the exact key, else any case."""
    if name in document:
        return document[name]
    for key, value in document.items():
        if key.lower() == name.lower():
            return value
    return None


class _Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose connections and threads its ExtensionsAPI tracks."""

    daemon_threads = True
    block_on_close = False  # ExtensionsAPI.close() joins the threads, with a deadline

    def __init__(self, api: ExtensionsAPI) -> None:
        self.api = api
        super().__init__((HOST, 0), _Handler)

    def process_request(
        self,
        request: socket.socket,  # type: ignore[override]
        client_address: tuple[str, int],
    ) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"lambda-emulator-{self.server_address[1]}-conn",
            daemon=True,
        )
        if not self.api._adopt(request, thread):
            request.close()

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self.api._drop(request)
        super().shutdown_request(request)

    def handle_error(
        self,
        request: socket.socket,  # type: ignore[override]
        client_address: tuple[str, int],
    ) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away, or close() shut the connection down
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One client connection, kept alive between requests as Lambda's is."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.api._dispatch(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest would show every request on a failure

    def read_body(self) -> bytes | None:
        """The request body; None when the request was refused or cut short."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0 or size > MAX_BODY:
            self.close_connection = True
            self.send_error(413 if size > MAX_BODY else 400)
            return None
        body = self.rfile.read(size)
        if len(body) < size:  # the client closed the connection mid-body
            self.close_connection = True
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                self.send_error(400)
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                self.send_error(413)
                return None
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                self.close_connection = True
                return None
            parts.append(chunk[:size])
