"""Limits on request heads and connections, shared by both servers.

gunicorn and waitress each have limits of their own, different ones, and answer a
client that breaks them in their own HTML or text. Here is one set, judged by one
function, and one way to answer: the same JSON ``{"__type": ..., "message": ...}``
as the AWS routes, with ``Cache-Control: no-store`` and ``Connection: close``. These
answers are given before a request reaches a route, so they have the same shape on
every route.

A request line may hold a 2048-byte secret id percent-encoded three times over,
hence 8190 bytes, the most gunicorn allows. No route reads a request body, so a
body is bounded tightly: a server may hold one in memory for every connection.
"""

from __future__ import annotations

import json
import re
import select
import socket
from collections.abc import Callable

__all__ = [
    "CHUNKED",
    "CONTINUE",
    "INCOMPLETE",
    "MALFORMED",
    "MAX_HEADER_FIELD",
    "MAX_HEADER_FIELDS",
    "MAX_REQUEST_BODY",
    "MAX_REQUEST_HEAD",
    "MAX_REQUEST_LINE",
    "RETRY_AFTER_SECONDS",
    "answer_body",
    "answer_headers",
    "answer_reason",
    "answered_status",
    "body_length",
    "chunked_body_end",
    "close_at_once",
    "discard_arrived",
    "expects_continue",
    "head_end",
    "head_problem",
    "http_answer",
    "send_and_close",
    "take_backlog",
]

#: The longest request line, without its CRLF; a longer one is answered 414.
MAX_REQUEST_LINE = 8190
#: The longest header field, with its CRLF; a longer one is answered 431.
MAX_HEADER_FIELD = 8190
#: The most header fields in a request; more are answered 431.
MAX_HEADER_FIELDS = 100
#: The largest request head, from the request line to the blank line; 431 beyond.
MAX_REQUEST_HEAD = 65536
#: The largest request body, as sent (a chunked one with its framing); 413 beyond.
MAX_REQUEST_BODY = 65536
#: What ``body_length`` says of a chunked body, whose end ``chunked_body_end`` finds.
CHUNKED = -1
#: What ``chunked_body_end`` says while more must arrive, and of a malformed body.
INCOMPLETE = -1
MALFORMED = -2
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
RETRY_AFTER_SECONDS = 1

_END_OF_HEAD = b"\r\n\r\n"
_MAX_CHUNK_LINE = 1024
#: A chunk size line: hexadecimal digits, then perhaps extensions after a ``;``.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?")
_DISCARD_LIMIT = 65536

#: The answers a server gives on its own: status -> (reason, __type, message).
_ANSWERS: dict[int, tuple[str, str, str]] = {
    400: (
        "Bad Request",
        "InvalidRequestException",
        "the request is not valid HTTP/1.1",
    ),
    408: (
        "Request Timeout",
        "RequestTimeoutException",
        (
            "the request did not arrive in full within the request timeout "
            "(CACHECORE_REQUEST_TIMEOUT)"
        ),
    ),
    413: (
        "Content Too Large",
        "RequestEntityTooLargeException",
        f"the request body is over {MAX_REQUEST_BODY} bytes",
    ),
    414: (
        "URI Too Long",
        "UriTooLongException",
        f"the request line is over {MAX_REQUEST_LINE} bytes",
    ),
    417: (
        "Expectation Failed",
        "ExpectationFailedException",
        "the only expectation this server meets is 100-continue",
    ),
    429: (
        "Too Many Requests",
        "TooManyRequestsException",
        (
            "too many connections are open (CACHECORE_MAX_CONNECTIONS); "
            f"retry after {RETRY_AFTER_SECONDS} second"
        ),
    ),
    431: (
        "Request Header Fields Too Large",
        "RequestHeaderFieldsTooLargeException",
        (
            f"a request may have {MAX_HEADER_FIELDS} header fields of up to "
            f"{MAX_HEADER_FIELD} bytes each, and a head of up to "
            f"{MAX_REQUEST_HEAD} bytes"
        ),
    ),
    500: (
        "Internal Server Error",
        "InternalFailure",
        "internal error; see the server log",
    ),
    501: (
        "Not Implemented",
        "NotImplementedException",
        "the request uses a transfer coding this server does not implement",
    ),
}


def head_end(head: bytes | bytearray, start: int = 0) -> int:
    """Where the request head in ``head`` ends (past its blank line), or -1.

    ``start`` is how far an earlier call searched, so that a head arriving a byte
    at a time is not searched from its start every time.
    """
    found = head.find(_END_OF_HEAD, max(0, start - len(_END_OF_HEAD) + 1))
    return found + len(_END_OF_HEAD) if found >= 0 else -1


def head_problem(head: bytes | bytearray, end: int) -> int | None:
    """The status a request head is refused with, 414, 431 or 501, or ``None``.

    ``end`` is where the head ends, as ``head_end`` finds it, or -1 while it is
    incomplete: then what has arrived is judged, so that a client cannot make a
    server keep more than the limits allow. One blank line may lead the head.
    """
    start = 2 if head.startswith(b"\r\n") else 0
    line_end = head.find(b"\r\n", start, start + MAX_REQUEST_LINE + 2)
    if line_end < 0:
        if end >= 0 or len(head) - start > MAX_REQUEST_LINE + 1:
            return 414
        return 431 if len(head) > MAX_REQUEST_HEAD else None
    if (end if end >= 0 else len(head)) > MAX_REQUEST_HEAD:
        return 431
    if end < 0:
        last_field = len(head) - (head.rfind(b"\r\n") + 2) - int(head.endswith(b"\r"))
        return 431 if last_field + 2 > MAX_HEADER_FIELD else None
    if end - 4 <= line_end:
        return None  # no header fields

    fields = head[line_end + 2 : end - 4].split(b"\r\n")
    if len(fields) > MAX_HEADER_FIELDS:
        return 431
    if any(len(field) + 2 > MAX_HEADER_FIELD for field in fields):
        return 431
    for field in fields:
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"transfer-encoding":
            # Only plain chunked is framed by the limits here; gunicorn would take
            # "gzip, chunked" and read a body of any size. Both servers refuse the
            # rest with 501, as waitress already did.
            if value.strip().lower() != b"chunked":
                return 501
    return None


def body_length(head: bytes | bytearray, end: int) -> int:
    """How much body follows a complete head: its ``Content-Length``, or ``CHUNKED``.

    0 for none, and for a head that frames its body in a way the server's own
    parser refuses (two lengths, a length not in digits, both a length and a
    transfer coding, a coding other than chunked): the parser answers it at once.
    """
    length = None
    chunked = False
    for line in head[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"transfer-encoding":
            if chunked or value.lower() != b"chunked":
                return 0
            chunked = True
        elif name == b"content-length":
            if length is not None or not value.isdigit():
                return 0
            length = int(value)
    if chunked:
        return CHUNKED if length is None else 0
    return length or 0


def expects_continue(head: bytes | bytearray, end: int) -> bool:
    """Whether an HTTP/1.1 head asks to be told ``100 Continue`` before its body."""
    lines = head[:end].lstrip(b"\r\n").split(b"\r\n")
    if not lines[0].endswith(b" HTTP/1.1"):
        return False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"expect":
            return value.strip().lower() == b"100-continue"
    return False


def chunked_body_end(data: bytes | bytearray, start: int) -> tuple[int, int]:
    """Walk the chunks of a chunked body in ``data``, from the chunk at ``start``.

    Returns ``(end, start)``: ``end`` is where the body and its trailer fields
    end, ``INCOMPLETE`` while more must arrive, or ``MALFORMED`` for a body that
    is not validly chunked; ``start`` is the chunk to walk on from once more has
    arrived.
    """
    while True:
        line_end = data.find(b"\r\n", start, start + _MAX_CHUNK_LINE + 2)
        if line_end < 0:
            too_long = len(data) - start > _MAX_CHUNK_LINE + 1
            return (MALFORMED if too_long else INCOMPLETE), start
        size = _CHUNK_SIZE.fullmatch(data, start, line_end)
        if size is None:
            return MALFORMED, start
        data_end = line_end + 2 + int(size.group(1), 16)
        if data_end == line_end + 2:  # the last chunk; trailer fields may follow
            found = data.find(b"\r\n\r\n", line_end)
            return (found + 4 if found >= 0 else INCOMPLETE), start
        if len(data) < data_end + 2:
            return INCOMPLETE, start
        if data[data_end : data_end + 2] != b"\r\n":
            return MALFORMED, start
        start = data_end + 2


def answered_status(status: int) -> int:
    """``status`` if there is an answer for it here, else 400 or 500 by its class."""
    if status in _ANSWERS:
        return status
    return 400 if 400 <= status < 500 else 500


def answer_reason(status: int) -> str:
    """The reason phrase of a status this module answers with."""
    return _ANSWERS[status][0]


def answer_body(status: int) -> bytes:
    """The JSON body of the answer with ``status``."""
    _, aws_type, message = _ANSWERS[status]
    return json.dumps({"__type": aws_type, "message": message}).encode("utf-8")


def answer_headers(status: int) -> list[tuple[str, str]]:
    """The headers of the answer with ``status``, but for its length and framing."""
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    if status == 429:
        headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
    return headers


def http_answer(status: int) -> bytes:
    """The whole HTTP/1.1 answer with ``status``; it closes the connection."""
    body = answer_body(status)
    lines = [f"HTTP/1.1 {status} {answer_reason(status)}"]
    lines += [f"{name}: {value}" for name, value in answer_headers(status)]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def discard_arrived(sock: socket.socket) -> None:
    """Read and drop what a non-blocking socket holds, up to 64 KiB.

    Bytes left unread make ``close()`` reset the connection, which can destroy an
    answer before the client has read it.
    """
    discarded = 0
    while discarded < _DISCARD_LIMIT:
        try:
            data = sock.recv(_DISCARD_LIMIT)
        except OSError:
            return
        if not data:
            return
        discarded += len(data)


def close_at_once(sock: socket.socket, answer: bytes = b"") -> None:
    """Send ``answer`` if the socket takes it now, then close; never blocks.

    What the client sent and nobody read is discarded first, so that closing does
    not reset the connection under the answer.
    """
    try:
        sock.setblocking(False)
        discard_arrived(sock)
        if answer:
            sock.send(answer)
        sock.shutdown(socket.SHUT_WR)
        discard_arrived(sock)
    except OSError:
        pass
    finally:
        sock.close()


def send_and_close(sock: socket.socket, status: int) -> None:
    """Answer with ``status`` and close, without blocking."""
    close_at_once(sock, http_answer(status))


#: At a stop, at most this many connections waiting in a backlog are taken.
MAX_BACKLOG_TAKEN = 4096


def take_backlog(listener: socket.socket, accept: Callable[[], object]) -> None:
    """Call ``accept`` for each connection waiting in ``listener``'s backlog.

    At a stop: those connections were made before it, and closing the listener
    would reset them. Stops at ``MAX_BACKLOG_TAKEN``, or when the listener is
    closed.
    """
    for _ in range(MAX_BACKLOG_TAKEN):
        try:
            readable, _, _ = select.select([listener], [], [], 0)
        except (OSError, ValueError):
            return
        if not readable:
            return
        accept()
