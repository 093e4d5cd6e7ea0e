"""The request head limits, judged on whole heads and on heads still arriving."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachecore_server._limits import (
    CHUNKED,
    INCOMPLETE,
    MALFORMED,
    MAX_HEADER_FIELD,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_HEAD,
    MAX_REQUEST_LINE,
    body_length,
    chunked_body_end,
    expects_continue,
    head_end,
    head_problem,
    http_answer,
)


def head(line_length: int = 14, fields: tuple[int, ...] = ()) -> bytes:
    """A request head with a request line and fields of these lengths (no CRLF)."""
    line = b"GET /" + b"a" * (line_length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    lines = [line, *(b"X: " + b"v" * (n - 3) for n in fields)]
    return b"".join(piece + b"\r\n" for piece in lines) + b"\r\n"


def judge(raw: bytes) -> int | None:
    return head_problem(raw, head_end(raw))


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head(MAX_REQUEST_LINE), None),
        (head(MAX_REQUEST_LINE + 1), 414),
        (b"\r\n" + head(MAX_REQUEST_LINE), None),
        (head(fields=(MAX_HEADER_FIELD - 2,)), None),
        (head(fields=(MAX_HEADER_FIELD - 1,)), 431),
        (head(fields=(10,) * MAX_HEADER_FIELDS), None),
        (head(fields=(10,) * (MAX_HEADER_FIELDS + 1)), 431),
        (head(fields=(1000,) * 64), None),
        (head(fields=(1000,) * 66), 431),
        (b"GET / HTTP/1.1\r\n\r\n", None),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", 501),
    ],
)
def test_whole_head_is_judged_by_each_limit(raw, status):
    assert judge(raw) == status


def test_head_over_its_size_limit_is_refused_at_its_size_limit():
    raw = head(fields=(1000,) * 66)

    assert head_problem(raw[: MAX_REQUEST_HEAD + 1], -1) == 431
    assert head_problem(raw[:MAX_REQUEST_HEAD], -1) is None


def test_request_line_is_refused_as_soon_as_it_is_too_long():
    raw = head(MAX_REQUEST_LINE + 1)

    assert head_problem(raw[: MAX_REQUEST_LINE + 1], -1) is None
    assert head_problem(raw[: MAX_REQUEST_LINE + 2], -1) == 414


def test_end_of_head_is_found_across_the_pieces_it_arrives_in():
    raw = head(fields=(20, 30))
    searched, end = 0, -1
    for size in range(1, len(raw) + 1):
        end = head_end(raw[:size], searched)
        searched = size
        if end >= 0:
            break

    assert (size, end) == (len(raw), len(raw))


@given(
    line=st.integers(14, MAX_REQUEST_LINE + 2),
    fields=st.lists(
        st.integers(3, MAX_HEADER_FIELD + 1), max_size=MAX_HEADER_FIELDS + 1
    ),
    cut=st.floats(0, 1),
)
def test_a_head_still_arriving_is_refused_only_if_the_whole_would_be(line, fields, cut):
    raw = head(line, tuple(fields))
    part = raw[: int(len(raw) * cut)]

    early = head_problem(part, -1)

    assert early is None or early == judge(raw)


@pytest.mark.parametrize(
    ("fields", "length"),
    [
        ([], 0),
        ([b"Content-Length: 12"], 12),
        ([b"content-length:3 "], 3),
        ([b"Content-Length: 2", b"Content-Length: 2"], 0),
        ([b"Content-Length: -2"], 0),
        ([b"Content-Length: 5", b"Transfer-Encoding: chunked"], 0),
        ([b"Transfer-Encoding: chunked"], CHUNKED),
        ([b"Transfer-Encoding: gzip, chunked"], 0),
        ([b"Content-Length: 5", b"Expect: 100-continue"], 5),
    ],
)
def test_body_length_is_taken_only_from_a_plain_content_length(fields, length):
    raw = b"POST /cache HTTP/1.1\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"

    assert body_length(raw, head_end(raw)) == length


@pytest.mark.parametrize(
    ("body", "end"),
    [
        (b"0\r\n\r\n", 5),
        (b"2\r\n[]\r\n0\r\n\r\nGET / HTTP/1.1", 12),
        (b"2;name=value\r\n[]\r\n0\r\nTrailer: t\r\n\r\n", 35),
        (b"2\r\n[]\r\n", INCOMPLETE),
        (b"2\r\n[", INCOMPLETE),
        (b"0\r\nTrailer: t\r\n", INCOMPLETE),
        (b"2\r\n[]]\r\n", MALFORMED),
        (b"zz\r\n", MALFORMED),
        (b"1" * 2000, MALFORMED),
    ],
)
def test_chunked_body_ends_after_its_last_chunk_and_trailer(body, end):
    assert chunked_body_end(body, 0)[0] == end


def test_chunked_body_is_walked_on_from_where_it_stopped():
    body = b"3\r\nabc\r\n" * 3 + b"0\r\n\r\n"

    first, resume = chunked_body_end(body[:20], 0)
    then, _ = chunked_body_end(body, resume)

    assert (first, resume, then) == (INCOMPLETE, 16, len(body))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n", True),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", False),
        (b"POST / HTTP/1.1\r\nExpect: other\r\n\r\n", False),
        (b"POST / HTTP/1.1\r\n\r\n", False),
    ],
)
def test_only_an_http_1_1_head_expects_continue(raw, expected):
    assert expects_continue(raw, head_end(raw)) is expected


def test_answer_429_says_when_to_retry_and_closes():
    answer = http_answer(429)
    head_part, _, body = answer.partition(b"\r\n\r\n")

    assert head_part.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    for header in (b"Retry-After: 1", b"Cache-Control: no-store", b"Connection: close"):
        assert header in head_part.split(b"\r\n")
    assert json.loads(body)["__type"] == "TooManyRequestsException"
    assert b"Content-Length: %d" % len(body) in head_part
