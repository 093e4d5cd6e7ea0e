"""granian serves the app through an RSGI bridge: the same answers as waitress.

The bridge answers hits on granian's event loop and builds a WSGI environ for the
rest, from a request that granian has already parsed and partly decoded. Each
request here is sent byte for byte to both servers, and the answers must agree.
"""

from __future__ import annotations

import json
import socket
from importlib.util import find_spec

import pytest
from support import HOST, TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

pytestmark = pytest.mark.skipif(
    find_spec("granian") is None,
    reason="granian is not installed (the cachecore-server[granian] extra)",
)


def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send ``head`` (without its blank line) and ``body``; the answer, parsed."""
    with socket.create_connection((HOST, port), timeout=15) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return int(lines[0].split()[1]), headers, rest[:length]


Summary = tuple[int, str | None, str | None, str | None, str | None]


def summary(answer: tuple[int, dict, bytes]) -> Summary:
    """What must agree: the status, the body (of an error in JSON, its __type),
    X-Cache, Content-Type and Cache-Control."""
    status, headers, body = answer
    shown = body.decode("utf-8", "replace")
    if body and status != 200 and headers.get("content-type") == "application/json":
        shown = json.loads(body)["__type"]
    return (
        status,
        shown,
        headers.get("x-cache"),
        headers.get("content-type"),
        headers.get("cache-control"),
    )


@pytest.fixture(scope="module")
def servers(moto_url, start_module_sidecar, secretsmanager):
    name = "granian-bridge/a+b=c@d.e-f_g"
    secretsmanager.create_secret(Name=name, SecretString="bridge-value")
    env = sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    ports = {
        server: start_module_sidecar(server=server, env=env).port
        for server in ("waitress", "granian")
    }
    return name, ports


def token(value: bytes = TOKEN.encode()) -> bytes:
    return TOKEN_HEADER.encode() + b": " + value


CASES = {
    "hit by query": (b"GET /cache?name={name} HTTP/1.1", [token()]),
    "hit on the AWS route": (
        b"GET /secretsmanager/get?secretId={name} HTTP/1.1",
        [token()],
    ),
    "path form, escaped": (b"GET /v1/{escaped} HTTP/1.1", [token()]),
    "path not UTF-8": (b"GET /v1/a%FFb HTTP/1.1", [token()]),
    "two slashes": (b"GET //v1/{name} HTTP/1.1", [token()]),
    "the token twice": (b"GET /cache?name={name} HTTP/1.1", [token(), token()]),
    "no token": (b"GET /cache?name={name} HTTP/1.1", []),
    "a wrong token": (b"GET /cache?name={name} HTTP/1.1", [token(b"nope")]),
    "a token not ASCII": (b"GET /cache?name={name} HTTP/1.1", [token(b"caf\xc3\xa9")]),
    "forwarded": (
        b"GET /cache?name={name} HTTP/1.1",
        [token(), b"X-Forwarded-For: 203.0.113.9"],
    ),
    "HEAD": (b"HEAD /secretsmanager/get?secretId={name} HTTP/1.1", [token()]),
    "an escaped query": (
        b"GET /secretsmanager/get?secretId={escaped} HTTP/1.1",
        [token()],
    ),
    "a bad escape": (b"GET /cache?name=a%ZZ HTTP/1.1", [token()]),
    "unknown secret": (b"GET /cache?name=granian-bridge/none HTTP/1.1", [token()]),
    "the token under a name with _": (
        b"GET /cache?name={name} HTTP/1.1",
        [b"X_Aws_Parameters_Secrets_Token: " + TOKEN.encode()],
    ),
    "a wrong token, then the right one under a name with _": (
        b"GET /v1/{name} HTTP/1.1",
        [token(b"nope"), b"X_Aws_Parameters_Secrets_Token: " + TOKEN.encode()],
    ),
    "X_Forwarded_For on a hit": (
        b"GET /cache?name={name} HTTP/1.1",
        [token(), b"X_Forwarded_For: 203.0.113.9"],
    ),
    "X_Forwarded_For on the path form": (
        b"GET /v1/{name} HTTP/1.1",
        [token(), b"X_Forwarded_For: 203.0.113.9"],
    ),
    "raw UTF-8 in the query": (b"GET /cache?name=caf\xc3\xa9 HTTP/1.1", [token()]),
    "ping": (b"GET /ping HTTP/1.1", []),
    "no route": (b"GET /nowhere HTTP/1.1", [token()]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_granian_answers_as_waitress_does(servers, case):
    name, ports = servers
    escaped = name.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    line, fields = CASES[case]
    line = line.replace(b"{name}", name.encode()).replace(
        b"{escaped}", escaped.encode()
    )
    head = b"\r\n".join([line, b"Host: 127.0.0.1", *fields])
    for port in ports.values():  # the first read of each makes the later ones hits
        raw_exchange(port, head)

    answers = {
        server: summary(raw_exchange(port, head)) for server, port in ports.items()
    }

    assert answers["granian"] == answers["waitress"]


def test_granian_refuses_a_body_over_the_limit_as_waitress_does(servers):
    name, ports = servers
    body = b"x" * 70_000
    head = b"\r\n".join(
        [
            f"POST /cache?name={name} HTTP/1.1".encode(),
            b"Host: 127.0.0.1",
            token(),
            f"Content-Length: {len(body)}".encode(),
        ]
    )

    answers = {
        server: summary(raw_exchange(port, head, body))
        for server, port in ports.items()
    }

    assert answers["granian"] == answers["waitress"]
    assert answers["granian"][:2] == (413, "RequestEntityTooLargeException")


def test_granian_answers_a_small_body_and_keeps_the_connection(servers):
    name, ports = servers
    request = (
        f"POST /cache?name={name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"{TOKEN_HEADER}: {TOKEN}\r\nContent-Length: 5\r\n\r\nhello"
    ).encode()
    with socket.create_connection((HOST, ports["granian"]), timeout=15) as sock:
        answers = []
        for _ in range(2):
            sock.sendall(request)
            data = b""
            while b"bridge-value" not in data:
                chunk = sock.recv(65536)
                assert chunk, "the connection closed"
                data += chunk
            answers.append(data.split(b"\r\n", 1)[0])

    assert answers == [b"HTTP/1.1 200 OK"] * 2


def test_a_path_holding_u_fffd_is_read_as_not_utf8_under_granian(servers):
    # granian puts U+FFFD for bytes that are not UTF-8, so the two are one; the
    # bridge answers both as the other servers answer the bytes (no secret name
    # may hold U+FFFD).
    _, ports = servers
    answers = [
        summary(raw_exchange(ports["granian"], b"\r\n".join([line, token()])))
        for line in (b"GET /v1/a%EF%BF%BDb HTTP/1.1", b"GET /v1/a%FFb HTTP/1.1")
    ]

    refused = (400, "InvalidParameterException", None, "application/json", "no-store")
    assert answers == [refused] * 2


def test_granian_refuses_a_content_length_of_thousands_of_digits(servers):
    name, ports = servers
    head = b"\r\n".join(
        [
            f"POST /cache?name={name} HTTP/1.1".encode(),
            b"Host: 127.0.0.1",
            token(),
            b"Content-Length: " + b"0" * 4400,
        ]
    )

    refused = summary(raw_exchange(ports["granian"], head))
    after = summary(raw_exchange(ports["granian"], b"GET /ping HTTP/1.1"))

    assert refused[:2] == (400, "InvalidRequestException")
    assert after[0] == 200
