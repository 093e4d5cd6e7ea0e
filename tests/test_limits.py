"""The limits of both servers, seen by clients on raw sockets: slow and silent
clients hold no thread and are timed out, a connection beyond the limit is answered
429 at once, and request lines and heads over their limits are refused, every one
in the API's JSON shape."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from support import HOST, Answer, Sidecar, request, sidecar_env

from cachecore_server._serve import FULL_LIMITS

SERVERS = FULL_LIMITS
THREADS = 2
REQUEST_TIMEOUT = 2.0
#: How late a server may be to time a connection out (its loops wake every 1 s).
SLACK = 2.0
#: Requests that stop part way: in the head, in a body of known length, in a
#: chunked body, and before a body the client waits to be told to send.
PARTIAL_REQUESTS = (
    b"GET /ping HTTP/1.1\r\nHost: x\r\n",
    b"POST /cache?name=x HTTP/1.1\r\nContent-Length: 100\r\n\r\n[]",
    b"POST /cache?name=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n",
    b"POST /cache?name=x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
)
PING = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sidecar(
    start_sidecar: Callable[..., Sidecar], moto_url: str, server: str
) -> Callable[..., Sidecar]:
    def start(**settings: str) -> Sidecar:
        settings.setdefault("CACHECORE_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT))
        env = sidecar_env(moto_url, CACHECORE_AUTH="none", **settings)
        return start_sidecar("--threads", str(THREADS), server=server, env=env)

    return start


@contextmanager
def connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection((HOST, port), timeout=5))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes, failing at ``deadline``."""
    received = b""
    for _ in range(10_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    pytest.fail(f"the server did not close the connection in time; got {received!r}")


def read_until(sock: socket.socket, end: bytes) -> bytes:
    """What the server sends up to and with ``end``, within 5 s."""
    received = b""
    sock.settimeout(5)
    for _ in range(1000):
        if received.endswith(end):
            return received
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    pytest.fail(f"the answer did not end with {end!r}: {received!r}")


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def exchange(port: int, raw_request: bytes, within: float = 5.0) -> Answer:
    with connections(port, 1) as (sock,):
        sock.sendall(raw_request)
        return parse(read_until_closed(sock, time.monotonic() + within))


def aws_type(answer: Answer) -> str:
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    document = json.loads(answer.body)
    assert document["message"]
    return str(document["__type"])


def timed_ping(port: int) -> float:
    started = time.monotonic()
    answer = request(port, "GET", "/ping", timeout=REQUEST_TIMEOUT)
    assert (answer.status, answer.body) == (200, b"healthy")
    return time.monotonic() - started


def test_clients_holding_partial_requests_do_not_stop_the_server(sidecar):
    port = sidecar().port
    count = THREADS * len(PARTIAL_REQUESTS)

    with (
        connections(port, count) as slow,
        connections(port, count) as idle,
        connections(port, 1) as (kept_alive,),
    ):
        sent = time.monotonic()
        for n, sock in enumerate(slow):
            sock.sendall(PARTIAL_REQUESTS[n % len(PARTIAL_REQUESTS)])
        kept_alive.sendall(PING)
        assert read_until(kept_alive, b"healthy").startswith(b"HTTP/1.1 200 ")

        assert timed_ping(port) < REQUEST_TIMEOUT

        deadline = sent + REQUEST_TIMEOUT + SLACK
        for sock in slow:
            raw = read_until_closed(sock, deadline)
            timed_out = parse(raw.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))
            assert timed_out.status == 408
            assert aws_type(timed_out) == "RequestTimeoutException"
        for sock in [*idle, kept_alive]:
            assert read_until_closed(sock, deadline) == b""
        assert time.monotonic() - sent >= REQUEST_TIMEOUT * 0.9


def test_clients_that_keep_a_closing_connection_open_do_not_stall_the_server(
    sidecar,
):
    port = sidecar().port

    with connections(port, 4 * THREADS) as lingering:
        for sock in lingering:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for sock in lingering:
            assert read_until(sock, b"healthy").startswith(b"HTTP/1.1 200 ")

        assert timed_ping(port) < REQUEST_TIMEOUT


def test_connection_beyond_the_limit_is_answered_429_at_once_and_closed(sidecar):
    port = sidecar(CACHECORE_MAX_CONNECTIONS="4", CACHECORE_REQUEST_TIMEOUT="20").port

    with connections(port, 4) as held:
        refused = exchange(port, PING, within=REQUEST_TIMEOUT)

        assert refused.status == 429
        assert refused.headers["retry-after"] == "1"
        assert aws_type(refused) == "TooManyRequestsException"

        held.pop().close()
        statuses = []
        for _ in range(100):
            statuses.append(request(port, "GET", "/ping", timeout=5).status)
            if statuses[-1] == 200:
                break
            time.sleep(0.05)
        assert statuses[-1] == 200, statuses
        assert set(statuses) <= {429, 200}


def request_line(length: int) -> bytes:
    """``GET /cache?name=aaa… HTTP/1.1`` of exactly ``length`` bytes."""
    frame = len("GET /cache?name= HTTP/1.1")
    return f"GET /cache?name={'a' * (length - frame)} HTTP/1.1".encode()


def test_request_line_over_8190_bytes_is_414_and_a_2048_byte_id_fits(sidecar):
    port = sidecar().port
    encoded_id = "%41" * 2048

    too_long = exchange(port, request_line(8191) + b"\r\nHost: x\r\n\r\n")
    longest = exchange(port, request_line(8190) + b"\r\nConnection: close\r\n\r\n")
    largest_id = request(port, "GET", f"/secretsmanager/get?secretId={encoded_id}")

    assert too_long.status == 414
    assert aws_type(too_long) == "UriTooLongException"
    assert longest.status == 400
    assert "at most 2048 bytes" in longest.text
    assert largest_id.status == 404
    assert json.loads(largest_id.body)["__type"] == "ResourceNotFoundException"


def ping_with(fields: list[bytes]) -> bytes:
    return b"".join(
        [b"GET /ping HTTP/1.1\r\n", *(f + b"\r\n" for f in fields), b"\r\n"]
    )


def test_header_fields_over_their_limits_are_431(sidecar):
    port = sidecar().port
    close = b"Connection: close"
    filler = b"v" * 400

    cases = {
        "a field of 8191 bytes": ping_with([close, b"X-Big: " + b"a" * 8182]),
        "101 fields": ping_with([close, *(b"X-%d: v" % i for i in range(100))]),
        "a head over 64 KiB": ping_with(
            [close, *(b"X-%d: %s" % (i, b"v" * 1200) for i in range(60))]
        ),
    }
    refused = {name: exchange(port, raw) for name, raw in cases.items()}
    fits = exchange(
        port, ping_with([close, b"X-Big: " + b"a" * 8181, *([b"X: " + filler] * 98)])
    )

    for name, answer in refused.items():
        assert answer.status == 431, name
        assert aws_type(answer) == "RequestHeaderFieldsTooLargeException", name
    assert (fits.status, fits.body) == (200, b"healthy")


def test_malformed_request_is_400_in_the_api_shape(sidecar):
    port = sidecar().port

    answer = exchange(port, b"GET /ping HTTP/1.1\r\nno colon\r\n\r\n")

    assert answer.status == 400
    assert aws_type(answer) == "InvalidRequestException"


def test_body_over_64_kib_is_413_and_one_of_64_kib_is_ignored(
    sidecar, secretsmanager, unique
):
    name = unique("body")
    secretsmanager.create_secret(Name=name, SecretString="s3cret-value")
    port = sidecar().port
    post = f"POST /cache?name={name} HTTP/1.1\r\nConnection: close\r\n".encode()
    largest = b"[" + b" " * (65536 - 2) + b"]"
    chunks = b"8000\r\n" + b" " * 0x8000 + b"\r\n"

    too_large = exchange(port, b"POST /cache HTTP/1.1\r\nContent-Length: 65537\r\n\r\n")
    too_large_chunked = exchange(
        port, post + b"Transfer-Encoding: chunked\r\n\r\n" + chunks * 2
    )
    served = exchange(port, post + b"Content-Length: 65536\r\n\r\n" + largest)
    served_chunked = exchange(
        port, post + b"Transfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
    )

    for refused in (too_large, too_large_chunked):
        assert refused.status == 413
        assert aws_type(refused) == "RequestEntityTooLargeException"
    for answer in (served, served_chunked):
        assert (answer.status, answer.text) == (200, "s3cret-value")
