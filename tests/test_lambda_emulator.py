"""The Lambda Extensions API emulator itself, driven with raw http.client requests.

Each test plays the extension by hand: the requests it sends are the ones a real
extension process sends, on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from lambda_emulator import (
    EXIT_ERROR_PATH,
    INIT_ERROR_PATH,
    NEXT_PATH,
    REGISTER_PATH,
    ExtensionsAPI,
)

NAME = "cachecore-ext"
BOTH = {"events": ["INVOKE", "SHUTDOWN"]}
WAIT = 3.0


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.raw = response.read()

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def connect(api: ExtensionsAPI, timeout: float = 5.0) -> http.client.HTTPConnection:
    host, port = api.address.split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def call(
    api: ExtensionsAPI,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | dict[str, Any] | None = None,
    *,
    conn: http.client.HTTPConnection | None = None,
    timeout: float = 5.0,
) -> Answer:
    """One request; a fresh connection unless one is given (then kept open)."""
    own = conn is None
    connection = conn or connect(api, timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        connection.request(method, path, body=data, headers=headers or {})
        return Answer(connection.getresponse())
    finally:
        if own:
            connection.close()


def register(
    api: ExtensionsAPI,
    name: str = NAME,
    body: bytes | dict[str, Any] | None = None,
    **headers: str,
) -> Answer:
    sent = {"Lambda-Extension-Name": name, **headers}
    return call(api, "POST", REGISTER_PATH, sent, BOTH if body is None else body)


def registered(api: ExtensionsAPI, name: str = NAME, **body: Any) -> str:
    answer = register(api, name, body or None)
    assert answer.status == 200, answer.raw
    return str(answer.headers["Lambda-Extension-Identifier"])


def next_event(api: ExtensionsAPI, identifier: str, **kw: Any) -> Answer:
    return call(
        api, "GET", NEXT_PATH, {"Lambda-Extension-Identifier": identifier}, **kw
    )


def report(
    api: ExtensionsAPI,
    path: str,
    identifier: str,
    error_type: str | None,
    body: bytes | dict[str, Any] | None = None,
) -> Answer:
    headers = {"Lambda-Extension-Identifier": identifier}
    if error_type is not None:
        headers["Lambda-Extension-Function-Error-Type"] = error_type
    return call(api, "POST", path, headers, body)


def refused(answer: Answer, status: int, error_type: str) -> None:
    assert answer.status == status, answer.raw
    assert answer.headers["Content-Type"] == "application/json"
    document = answer.json
    assert set(document) == {"errorMessage", "errorType"}
    assert document["errorType"] == error_type
    assert document["errorMessage"]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


@pytest.fixture
def api(pool: ThreadPoolExecutor) -> Iterator[ExtensionsAPI]:
    # Closed before the pool ends: close() answers the calls its threads have parked.
    with ExtensionsAPI(function_name="fn", handler="app.handler") as running:
        yield running


def parked(api: ExtensionsAPI, pool: ThreadPoolExecutor, ident: str) -> Future[Answer]:
    """A GET event/next in a thread, returned once the emulator has it parked."""
    future = pool.submit(next_event, api, ident)
    api.wait_waiting(WAIT, ident)
    return future


# -- register -------------------------------------------------------------------


def test_register_answers_identifier_and_function(api: ExtensionsAPI) -> None:
    answer = register(api)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    identifier = answer.headers["Lambda-Extension-Identifier"]
    assert str(uuid.UUID(identifier)) == identifier
    assert answer.json == {
        "functionName": "fn",
        "functionVersion": "$LATEST",
        "handler": "app.handler",
    }
    registration = api.wait_registered(WAIT)
    assert registration.name == NAME
    assert registration.identifier == identifier
    assert registration.events == ["INVOKE", "SHUTDOWN"]
    assert registration.headers["lambda-extension-name"] == NAME
    assert json.loads(registration.body) == BOTH
    assert registration.arrived <= registration.answered <= time.monotonic()
    assert api.extension_state(identifier) == "Registered"
    assert api.state == "init"
    [request] = api.requests
    assert (request.method, request.path, request.status) == (
        "POST",
        REGISTER_PATH,
        200,
    )


def test_register_account_id_only_on_request(api: ExtensionsAPI) -> None:
    features = {"Lambda-Extension-Accept-Feature": "foo, accountId"}
    answer = register(api, NAME, None, **features)
    assert answer.json["accountId"] == "123456789012"
    assert api.wait_registered(WAIT).features == ["accountId"]
    assert "accountId" not in register(api, "other").json


@pytest.mark.parametrize(
    ("body", "events"),
    [
        (b"{}", []),
        (b"null", []),
        (b'{"Events": ["SHUTDOWN"], "other": 1}', ["SHUTDOWN"]),
        (b'{"events": []}', []),
    ],
)
def test_register_bodies_go_accepts(
    api: ExtensionsAPI, body: bytes, events: list[str]
) -> None:
    assert register(api, body=body).status == 200
    assert api.wait_registered(WAIT).events == events


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        (b"", "InvalidRequestFormat"),
        (b"{not json", "InvalidRequestFormat"),
        (b'["INVOKE"]', "InvalidRequestFormat"),
        (b'{"events": "INVOKE"}', "InvalidRequestFormat"),
        (b'{"events": [1]}', "InvalidRequestFormat"),
        (b'{"events": ["INVOKE"], "configurationKeys": ["k"]}', "InvalidRequestFormat"),
        (b'{"events": ["INVOKE", "BOOT"]}', "Extension.InvalidEventType"),
        (b'{"events": ["invoke"]}', "Extension.InvalidEventType"),
    ],
)
@pytest.mark.parametrize("status", [403, 400])
def test_register_bad_body(body: bytes, error_type: str, status: int) -> None:
    with ExtensionsAPI(bad_request_status=status) as api:
        refused(register(api, body=body), status, error_type)
        assert api.registrations == []
        assert api.requests[0].status == status


def test_register_without_name(api: ExtensionsAPI) -> None:
    answer = call(api, "POST", REGISTER_PATH, {}, BOTH)
    refused(answer, 403, "Extension.InvalidExtensionName")
    refused(register(api, ""), 403, "Extension.InvalidExtensionName")


def test_register_twice(api: ExtensionsAPI) -> None:
    registered(api)
    refused(register(api), 403, "Extension.InvalidExtensionState")
    assert len(api.registrations) == 1


def test_register_after_init(api: ExtensionsAPI, pool: ThreadPoolExecutor) -> None:
    first = registered(api)
    parked(api, pool, first)  # init done: every registered extension is in next
    assert api.state == "ready"
    refused(register(api, "late"), 403, "Extension.RegistrationClosed")


def test_register_after_an_event(api: ExtensionsAPI) -> None:
    registered(api)
    api.invoke()
    refused(register(api, "late"), 403, "Extension.RegistrationClosed")


def test_register_unknown_file_name_is_internal() -> None:
    with ExtensionsAPI(extension_names=[NAME]) as api:
        refused(register(api, "wrong-name"), 403, "Extension.InvalidEventType")
        internal = register(api, "wrong-name", {"events": ["INVOKE"]})
        assert internal.status == 200
        assert api.wait_registered(WAIT, "wrong-name").internal
        registered(api)
        assert not api.wait_registered(WAIT, NAME).internal


def test_register_limit_of_ten(api: ExtensionsAPI) -> None:
    for n in range(10):
        registered(api, f"ext-{n}")
    refused(register(api, "ext-10"), 403, "Extension.TooManyExtensions")


# -- hold / release -------------------------------------------------------------


def test_hold_and_release_register(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    api.hold_register()
    future = pool.submit(register, api)
    arrived = api.wait_request(REGISTER_PATH, WAIT)
    time.sleep(0.1)
    assert not future.done()
    assert arrived.status is None
    with pytest.raises(TimeoutError):
        api.wait_registered(0.05)
    released = time.monotonic()
    api.release_register()
    assert future.result(WAIT).status == 200
    registration = api.wait_registered(WAIT)
    assert registration.arrived == arrived.time < released <= registration.answered
    assert register(api, "second").status == 200  # no longer held


def test_close_answers_a_held_register() -> None:
    api = ExtensionsAPI().start()
    api.hold_register()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(register, api)
        api.wait_request(REGISTER_PATH, WAIT)
        started = time.monotonic()
        api.close()
        refused(future.result(WAIT), 500, "InternalServerError")
    assert time.monotonic() - started < 2.0


# -- event/next -----------------------------------------------------------------


def test_next_long_polls_then_gets_invoke(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    ident = registered(api)
    future = parked(api, pool, ident)
    time.sleep(0.1)
    assert not future.done()
    assert api.state == "ready"
    assert api.extension_state(ident) == "Ready"
    before = time.time() * 1000
    request_id = api.invoke(deadline_ms=None)
    answer = future.result(WAIT)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert str(uuid.UUID(answer.headers["Lambda-Extension-Event-Identifier"]))
    event = answer.json
    assert set(event) == {
        "eventType",
        "deadlineMs",
        "requestId",
        "invokedFunctionArn",
        "tracing",
    }
    assert event["eventType"] == "INVOKE"
    assert event["requestId"] == request_id
    assert (
        event["invokedFunctionArn"]
        == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    )
    assert before + 2900 <= event["deadlineMs"] <= time.time() * 1000 + 3100
    assert event["tracing"]["type"] == "X-Amzn-Trace-Id"
    assert event["tracing"]["value"].startswith("Root=1-")
    assert api.state == "invoking"
    assert api.extension_state(ident) == "Running"
    [delivered] = api.deliveries
    assert delivered.event == event
    assert delivered.event_id == answer.headers["Lambda-Extension-Event-Identifier"]
    parked(api, pool, ident)  # done with the invoke
    assert api.state == "ready"


def test_next_gets_queued_events_in_order(api: ExtensionsAPI) -> None:
    ident = registered(api)
    first = api.invoke("req-1", deadline_ms=1_700_000_000_000)
    second = api.invoke("req-2")
    api.shutdown("timeout", deadline_ms=1_700_000_002_000)
    with pytest.raises(RuntimeError):
        api.invoke()
    with pytest.raises(RuntimeError):
        api.shutdown()
    assert api.state == "shutting_down"
    connection = connect(api, 5)
    try:  # one kept-alive connection, as an extension's HTTP client uses
        events = [next_event(api, ident, conn=connection).json for _ in range(3)]
    finally:
        connection.close()
    assert [e["eventType"] for e in events] == ["INVOKE", "INVOKE", "SHUTDOWN"]
    assert [events[0]["requestId"], events[1]["requestId"]] == [first, second]
    assert (first, second) == ("req-1", "req-2")
    assert events[0]["deadlineMs"] == 1_700_000_000_000
    assert events[2] == {
        "eventType": "SHUTDOWN",
        "shutdownReason": "timeout",
        "deadlineMs": 1_700_000_002_000,
    }


@pytest.mark.parametrize("reason", ["spindown", "timeout", "failure"])
def test_shutdown_reasons(
    api: ExtensionsAPI, pool: ThreadPoolExecutor, reason: str
) -> None:
    ident = registered(api)
    future = parked(api, pool, ident)
    before = time.time() * 1000
    api.shutdown(reason)
    answer = future.result(WAIT)
    assert answer.status == 200
    assert answer.headers["Lambda-Extension-Event-Identifier"]
    event = answer.json
    assert event["eventType"] == "SHUTDOWN"
    assert event["shutdownReason"] == reason
    assert before + 1900 <= event["deadlineMs"] <= time.time() * 1000 + 2100
    assert set(event) == {"eventType", "shutdownReason", "deadlineMs"}


def test_shutdown_reason_checked(api: ExtensionsAPI) -> None:
    with pytest.raises(ValueError):
        api.shutdown("SPINDOWN")


def test_after_shutdown_next_stays_parked(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    ident = registered(api)
    api.shutdown()
    assert next_event(api, ident).json["eventType"] == "SHUTDOWN"
    future = parked(api, pool, ident)
    time.sleep(0.1)
    assert not future.done()
    api.close()
    refused(future.result(WAIT), 500, "InternalServerError")


def test_unsubscribed_events_are_not_delivered(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    ident = registered(api, events=["SHUTDOWN"])
    future = parked(api, pool, ident)
    api.invoke()
    time.sleep(0.1)
    assert not future.done()
    api.shutdown()
    assert future.result(WAIT).json["eventType"] == "SHUTDOWN"


def test_invoke_goes_to_every_subscribed_extension(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    one, two = registered(api, "one"), registered(api, "two")
    deaf = registered(api, "deaf", events=[])
    futures = [pool.submit(next_event, api, i) for i in (one, two, deaf)]
    api.wait_waiting(WAIT)
    request_id = api.invoke()
    got = [futures[0].result(WAIT).json, futures[1].result(WAIT).json]
    assert [e["requestId"] for e in got] == [request_id, request_id]
    assert not futures[2].done()
    api.close()
    refused(futures[2].result(WAIT), 500, "InternalServerError")


def test_second_concurrent_next_is_refused(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    ident = registered(api)
    first = parked(api, pool, ident)
    refused(next_event(api, ident), 403, "Extension.InvalidExtensionState")
    api.invoke()
    assert first.result(WAIT).status == 200


def test_parked_next_does_not_block_other_requests(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    ident = registered(api, "one")
    other = registered(api, "two")
    future = parked(api, pool, ident)
    started = time.monotonic()
    assert register(api, "three").status == 200  # "two" is still in init
    assert report(api, INIT_ERROR_PATH, other, "Extension.Fail").status == 202
    assert time.monotonic() - started < 1.0
    assert not future.done()


# -- identifiers ----------------------------------------------------------------


@pytest.mark.parametrize("path", [NEXT_PATH, INIT_ERROR_PATH, EXIT_ERROR_PATH])
@pytest.mark.parametrize(
    ("identifier", "error_type"),
    [
        (None, "Extension.MissingExtensionIdentifier"),
        ("", "Extension.MissingExtensionIdentifier"),
        ("not-a-uuid", "Extension.InvalidExtensionIdentifier"),
        (str(uuid.uuid4()), "Extension.UnknownExtensionIdentifier"),
    ],
)
def test_identifier_checked(
    api: ExtensionsAPI, path: str, identifier: str | None, error_type: str
) -> None:
    registered(api)
    headers = {"Lambda-Extension-Function-Error-Type": "Extension.X"}
    if identifier is not None:
        headers["Lambda-Extension-Identifier"] = identifier
    method = "GET" if path == NEXT_PATH else "POST"
    refused(call(api, method, path, headers), 403, error_type)


# -- init/error and exit/error --------------------------------------------------


def test_init_error_then_nothing_works(api: ExtensionsAPI) -> None:
    ident = registered(api)
    body = {"errorMessage": "no config", "errorType": "ConfigError", "stackTrace": []}
    answer = report(api, INIT_ERROR_PATH, ident, "Extension.ConfigInvalid", body)
    assert answer.status == 202
    assert answer.json == {"status": "OK"}
    error = api.wait_init_error(WAIT)
    assert (error.kind, error.name, error.identifier) == ("init", NAME, ident)
    assert error.error_type == "Extension.ConfigInvalid"
    assert error.json == body
    assert api.state == "errored"
    assert api.extension_state(ident) == "InitError"
    refused(next_event(api, ident), 403, "Extension.InvalidExtensionState")
    refused(
        report(api, EXIT_ERROR_PATH, ident, "Extension.X"),
        403,
        "Extension.InvalidExtensionState",
    )
    assert api.exit_errors == []


def test_init_error_body_is_optional_and_free(api: ExtensionsAPI) -> None:
    ident = registered(api)
    assert report(api, INIT_ERROR_PATH, ident, "anything", b"not json").status == 202
    assert api.wait_init_error(WAIT).json is None
    assert report(api, INIT_ERROR_PATH, ident, "again").status == 202  # re-entered
    assert [e.error_type for e in api.init_errors] == ["anything", "again"]


def test_init_error_after_next_is_refused(
    api: ExtensionsAPI, pool: ThreadPoolExecutor
) -> None:
    ident = registered(api)
    parked(api, pool, ident)
    answer = report(api, INIT_ERROR_PATH, ident, "Extension.Late")
    refused(answer, 403, "Extension.InvalidExtensionState")
    assert api.init_errors == []


@pytest.mark.parametrize("path", [INIT_ERROR_PATH, EXIT_ERROR_PATH])
def test_error_type_header_required(api: ExtensionsAPI, path: str) -> None:
    ident = registered(api)
    refused(report(api, path, ident, None), 403, "Extension.MissingHeader")
    assert api.state == "init"


def test_exit_error_while_running(api: ExtensionsAPI) -> None:
    ident = registered(api)
    api.invoke()
    assert next_event(api, ident).status == 200
    answer = report(api, EXIT_ERROR_PATH, ident, "Extension.Crash", {"errorType": "E"})
    assert answer.status == 202
    assert answer.json == {"status": "OK"}
    error = api.wait_exit_error(WAIT)
    assert (error.kind, error.error_type, error.json) == (
        "exit",
        "Extension.Crash",
        {"errorType": "E"},
    )
    assert api.state == "errored"
    assert api.extension_state(ident) == "ExitError"
    refused(next_event(api, ident), 403, "Extension.InvalidExtensionState")
    refused(
        report(api, INIT_ERROR_PATH, ident, "Extension.X"),
        403,
        "Extension.InvalidExtensionState",
    )
    api.shutdown()  # not queued for an extension in error


def test_exit_error_before_next(api: ExtensionsAPI) -> None:
    ident = registered(api)
    assert report(api, EXIT_ERROR_PATH, ident, "Extension.Early").status == 202
    assert api.wait_exit_error(WAIT).error_type == "Extension.Early"


def test_wait_errors_time_out(api: ExtensionsAPI) -> None:
    with pytest.raises(TimeoutError):
        api.wait_init_error(0.05)
    with pytest.raises(TimeoutError):
        api.wait_exit_error(0.05)
    with pytest.raises(TimeoutError):
        api.wait_waiting(0.05)


# -- routing and closing --------------------------------------------------------


def test_unknown_path_and_wrong_method(api: ExtensionsAPI) -> None:
    assert call(api, "GET", "/2020-01-01/extension/nope").status == 404
    assert call(api, "GET", "/2018-06-01/runtime/invocation/next").status == 404
    wrong = call(api, "GET", REGISTER_PATH)
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"
    assert call(api, "POST", NEXT_PATH).status == 405


def test_close_unblocks_parked_next_and_leaves_no_thread(
    pool: ThreadPoolExecutor,
) -> None:
    api = ExtensionsAPI().start()
    port = api.address.split(":")[1]
    ident = registered(api)
    future = parked(api, pool, ident)
    idle = connect(api, 5)
    idle.request("GET", "/nothing")
    idle.getresponse().read()  # an idle kept-alive connection stays open
    started = time.monotonic()
    api.close()
    assert time.monotonic() - started < 2.0
    answer = future.result(WAIT)
    refused(answer, 500, "InternalServerError")
    assert answer.headers["Connection"] == "close"
    idle.close()
    left = [
        t.name for t in threading.enumerate() if f"lambda-emulator-{port}" in t.name
    ]
    assert left == []
    assert api.state == "closed"
    api.close()  # twice is fine
    with pytest.raises(RuntimeError):
        api.invoke()
    with pytest.raises(RuntimeError):
        api.start()


def test_address_for_the_runtime_api_variable() -> None:
    api = ExtensionsAPI()
    with pytest.raises(RuntimeError):
        _ = api.address
    with api:
        host, port = api.address.split(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert api.url == f"http://{api.address}"


# -- a real extension process ---------------------------------------------------

EXTENSION = r"""
import json, os, sys, urllib.request

base = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
request = urllib.request.Request(
    base + "/register",
    data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
    headers={"Lambda-Extension-Name": "py-ext"},
    method="POST",
)
with urllib.request.urlopen(request, timeout=5) as answer:
    identifier = answer.headers["Lambda-Extension-Identifier"]
for _ in range(5):
    request = urllib.request.Request(
        base + "/event/next", headers={"Lambda-Extension-Identifier": identifier}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        event = json.load(answer)
    print(event["eventType"], event.get("requestId") or event["shutdownReason"])
    sys.stdout.flush()
    if event["eventType"] == "SHUTDOWN":
        break
"""


def test_a_real_extension_process(api: ExtensionsAPI) -> None:
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address}
    process = subprocess.Popen(
        [sys.executable, "-c", EXTENSION],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        registration = api.wait_registered(10)
        assert registration.name == "py-ext"
        api.wait_waiting(WAIT)
        assert api.state == "ready"
        request_id = api.invoke()
        api.wait_waiting(WAIT)
        api.shutdown("spindown")
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.decode().split("\n") == [f"INVOKE {request_id}", "SHUTDOWN spindown", ""]
    assert [d.event["eventType"] for d in api.deliveries] == ["INVOKE", "SHUTDOWN"]
