"""SecretsClient against a scripted server: what a real sidecar cannot be made to
answer on demand (a 503 while starting, a kept-alive connection closed under a
request, exact Retry-After values), and the shape of each request."""

from __future__ import annotations

import base64
import json
import logging
import socket

import pytest
from fakeserver import HOST, JSON, OK, error
from urllib3.exceptions import HTTPError

import cachecore
from cachecore_client import (
    TOKEN_HEADER,
    AccessDeniedError,
    ClientClosedError,
    InvalidRequestError,
    RetryPolicy,
    SecretNotFoundError,
    SecretsClient,
    SidecarNotReadyError,
    SidecarUnavailableError,
    ThrottledError,
    UnexpectedResponseError,
)


def client(url, fake_time, **kwargs) -> SecretsClient:
    kwargs.setdefault("token", "t0ken")
    return SecretsClient(
        url,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        random=kwargs.pop("random", lambda: 0.5),
        **kwargs,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def test_a_429_is_retried_after_its_retry_after(serve, fake_time):
    server = serve(error(429, "ThrottlingException", **{"Retry-After": "1"}), OK)

    value = client(server.url, fake_time).get_secret_string("app/db")

    assert value == "s3cr3t"
    assert len(server.seen) == 2
    assert fake_time.pauses == [pytest.approx(1.05)]  # 1 s and a little jitter


def test_a_503_of_a_starting_extension_is_retried(serve, fake_time):
    starting = error(503, "ServiceUnavailableException", **{"Retry-After": "1"})
    server = serve(starting, starting, OK)

    assert client(server.url, fake_time).get_secret_string("app/db") == "s3cr3t"
    assert len(server.seen) == 3


def test_a_503_that_lasts_is_raised_once_the_attempts_are_spent(serve, fake_time):
    server = serve(error(503, "ServiceUnavailableException", **{"Retry-After": "1"}))

    with pytest.raises(SidecarNotReadyError) as caught:
        client(server.url, fake_time).get_secret_string("app/db")

    assert (caught.value.status, caught.value.aws_type) == (
        503,
        "ServiceUnavailableException",
    )
    assert isinstance(caught.value, cachecore.UpstreamUnavailableError)
    assert len(server.seen) == RetryPolicy().attempts


def test_a_retry_after_beyond_the_budget_is_not_waited_for(serve, fake_time):
    server = serve(error(429, "ThrottlingException", **{"Retry-After": "30"}))

    with pytest.raises(ThrottledError):
        client(server.url, fake_time).get_secret_string("app/db")

    assert fake_time.pauses == []
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (error(400, "InvalidParameterException"), InvalidRequestError),
        (error(403, "AccessDeniedException"), AccessDeniedError),
        (error(404, "ResourceNotFoundException"), SecretNotFoundError),
        (error(500, "InternalFailure"), UnexpectedResponseError),
    ],
)
def test_an_answer_that_means_no_is_never_retried(serve, fake_time, answer, kind):
    server = serve(answer)

    with pytest.raises(kind):
        client(server.url, fake_time).get_secret_string("app/db")

    assert len(server.seen) == 1
    assert fake_time.pauses == []


def test_a_kept_alive_connection_closed_under_a_request_is_redone_at_once(
    serve, fake_time
):
    server = serve(OK, ("close", {}, b""), OK)
    reader = client(server.url, fake_time)
    reader.get_secret_string("app/db")

    assert reader.get_secret_string("app/db") == "s3cr3t"
    assert [seen.connection for seen in server.seen] == [1, 1, 2]
    assert fake_time.pauses == []


def test_connections_closed_every_time_end_as_sidecar_unavailable(serve, fake_time):
    server = serve(("close", {}, b""))

    with pytest.raises(SidecarUnavailableError, match="closed the connection"):
        client(server.url, fake_time).get_secret_string("app/db")

    # the first close is redone at once; then each try counts, with a pause
    assert len(server.seen) == RetryPolicy().attempts + 1
    assert len(fake_time.pauses) == RetryPolicy().attempts - 1


def test_a_refused_connection_is_retried_with_full_jitter_then_raised(fake_time):
    url = f"http://{HOST}:{closed_port()}"

    with pytest.raises(SidecarUnavailableError) as caught:
        client(url, fake_time).get_secret_string("app/db")

    assert fake_time.pauses == [0.05, 0.1, 0.2]  # half of 0.1, 0.2, 0.4
    assert caught.value.status is None
    assert caught.value.secret_id == "app/db"
    assert isinstance(caught.value.__cause__, HTTPError)


def test_no_retry_starts_past_the_budget(fake_time):
    url = f"http://{HOST}:{closed_port()}"
    policy = RetryPolicy(attempts=100, backoff_base=0.4, backoff_max=0.4, budget=1.0)

    with pytest.raises(SidecarUnavailableError):
        client(url, fake_time, retry=policy, random=lambda: 1.0).get_secret_string("x")

    assert fake_time.pauses == [0.4, 0.4]


def test_a_secret_read_sends_the_token_and_every_value_encoded(serve, fake_time):
    server = serve(OK)

    client(server.url, fake_time).get_secret_string(
        "a/b+c=d@e!f g&h%",
        version_id="v/1",
        version_stage="AWS+PENDING",
        refresh=True,
    )

    seen = server.seen[0]
    assert seen.target == (
        "/secretsmanager/get?secretId=a%2Fb%2Bc%3Dd%40e%21f%20g%26h%25"
        "&versionId=v%2F1&versionStage=AWS%2BPENDING&refreshNow=true"
    )
    assert seen.headers[TOKEN_HEADER.lower()] == "t0ken"


def test_a_parameter_read_sends_its_selector_and_decryption(serve, fake_time):
    body = json.dumps({"Parameter": {"Name": "/p", "Value": "v"}}).encode()
    server = serve((200, JSON, body))
    reader = client(server.url, fake_time)

    assert reader.get_parameter("/app/p", version=3, with_decryption=True) == "v"
    assert reader.get_parameter("/app/p", label="prod") == "v"

    assert [seen.target for seen in server.seen] == [
        "/systemsmanager/parameters/get?name=%2Fapp%2Fp&version=3&withDecryption=true",
        "/systemsmanager/parameters/get?name=%2Fapp%2Fp&label=prod",
    ]


def test_a_path_in_the_base_url_prefixes_every_route(serve, fake_time):
    server = serve(OK)

    client(server.url + "/sidecar/", fake_time).get_secret_string("x")

    assert server.seen[0].target == "/sidecar/secretsmanager/get?secretId=x"


def test_no_token_sends_no_token_header(serve, fake_time):
    server = serve(OK)

    SecretsClient(server.url, environ={}).get_secret_string("x")

    assert TOKEN_HEADER.lower() not in server.seen[0].headers


def test_binary_secrets_arrive_as_bytes_and_strings_as_utf8(serve, fake_time):
    data = bytes(range(256))
    binary = json.dumps({"Name": "b", "SecretBinary": base64.b64encode(data).decode()})
    server = serve((200, JSON, binary.encode()), OK)
    reader = client(server.url, fake_time)

    assert reader.get_secret_binary("b") == data
    assert reader.get_secret_binary("app/db") == b"s3cr3t"


def test_the_whole_answer_is_a_secret_value(serve, fake_time):
    server = serve(OK)

    value = client(server.url, fake_time).get_secret_value("app/db")

    assert (value.name, value.arn, value.version_id) == ("app/db", "arn:x", "v1")
    assert "s3cr3t" not in repr(value)


@pytest.mark.parametrize(
    "body", [b"s3cr3t-not-json", b'{"Name": "x"}', b'{"SecretBinary": "s3cr3t!"}']
)
def test_an_answer_that_is_not_a_secret_is_unexpected_and_not_repeated(
    serve, fake_time, body
):
    server = serve((200, JSON, body))

    with pytest.raises(UnexpectedResponseError) as caught:
        client(server.url, fake_time).get_secret_string("x")

    assert caught.value.status == 200
    assert "s3cr3t" not in str(caught.value) + repr(caught.value)
    assert caught.value.__context__ is None


class Fallback:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def _record(self, name, **kwargs):
        self.calls.append((name, kwargs))
        return name

    def get_secret_string(self, secret_id, **kwargs):
        return self._record(secret_id, **kwargs)

    def get_secret_json(self, secret_id, **kwargs):
        return {"from": self._record(secret_id, **kwargs)}

    def get_secret_binary(self, secret_id, **kwargs):
        return self._record(secret_id, **kwargs).encode()

    def get_parameter(self, name, **kwargs):
        return self._record(name, **kwargs)


def test_with_the_sidecar_unreachable_the_fallback_answers_and_is_logged(
    fake_time, caplog
):
    fallback = Fallback()
    reader = client(f"http://{HOST}:{closed_port()}", fake_time, fallback=fallback)

    with caplog.at_level(logging.WARNING, logger="cachecore_client"):
        text = reader.get_secret_string("app/db", version_stage="AWSPREVIOUS")
        parameter = reader.get_parameter("/p", label="prod")

    assert (text, parameter) == ("app/db", "/p")
    assert fallback.calls[0] == (
        "app/db",
        {"version_id": None, "version_stage": "AWSPREVIOUS", "refresh": False},
    )
    assert fallback.calls[1] == (
        "/p",
        {"version": None, "label": "prod", "with_decryption": False},
    )
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "in-process fallback" in caplog.records[0].getMessage()


def test_a_fallback_factory_is_built_once_on_first_need(fake_time):
    built = []

    def build():
        built.append(Fallback())
        return built[-1]

    reader = client(f"http://{HOST}:{closed_port()}", fake_time, fallback=build)
    assert built == []

    reader.get_secret_json("a")
    reader.get_secret_binary("b")

    assert len(built) == 1
    assert [name for name, _ in built[0].calls] == ["a", "b"]


def test_the_fallback_never_answers_for_a_sidecar_that_said_no(serve, fake_time):
    server = serve(error(404, "ResourceNotFoundException"))
    fallback = Fallback()

    with pytest.raises(SecretNotFoundError):
        client(server.url, fake_time, fallback=fallback).get_secret_string("x")

    assert fallback.calls == []


# -- an answer that began is an answer ---------------------------------------------

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ns3cr3"
STARTED_503 = b"HTTP/1.1 503 X\r\nContent-Length: 100\r\n\r\n{"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (CHUNKED, 200),  # broken chunks
        (CHUNKED.replace(b"5\r\n", b"zz\r\n"), 200),  # a chunk size that is not hex
        (STARTED_503, 503),  # a status that is retried, cut short: not retried
        (b"SSH-2.0-OpenSSH_9.2\r\n", None),  # not HTTP at all
    ],
)
def test_an_answer_cut_short_or_not_http_is_final_and_never_the_fallback(
    serve, fake_time, data, status
):
    server = serve(("raw", {}, data))
    fallback = Fallback()

    with pytest.raises(UnexpectedResponseError) as caught:
        client(server.url, fake_time, fallback=fallback).get_secret_string("x")

    assert caught.value.status == status
    assert (len(server.seen), fake_time.pauses, fallback.calls) == (1, [], [])
    assert "s3cr3" not in str(caught.value) + repr(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None


# -- close -----------------------------------------------------------------------


def test_a_read_after_close_raises_client_closed_at_once(serve, fake_time):
    server = serve(OK)
    fallback = Fallback()
    reader = client(server.url, fake_time, fallback=fallback)
    reader.close()
    reader.close()  # a second close does nothing

    for read in (
        lambda: reader.get_secret_string("app/db"),
        lambda: reader.get_secret_value("app/db"),
        lambda: reader.get_parameter("/p"),
    ):
        with pytest.raises(ClientClosedError, match="closed"):
            read()

    assert issubclass(ClientClosedError, cachecore.CacheError)
    assert issubclass(ClientClosedError, RuntimeError)
    assert (server.seen, fake_time.pauses, fallback.calls) == ([], [], [])


# -- arguments are checked as SecretCache checks them ------------------------------


@pytest.mark.parametrize(
    ("read", "named"),
    [
        (lambda c: c.get_secret_string(b"x"), b"x"),
        (lambda c: c.get_secret_string(5), 5),
        (lambda c: c.get_secret_string(""), ""),
        (lambda c: c.get_secret_json("x", version_stage=""), "x"),
        (lambda c: c.get_secret_value("x", version_id="v" * 65), "x"),
        (lambda c: c.get_parameter("/p", version=10**20), "/p"),
        (lambda c: c.get_parameter("/p", version=0), "/p"),
        (lambda c: c.get_parameter("/p", version=1, label="l"), "/p"),
        (lambda c: c.get_parameter("bad\nname"), "bad\nname"),
    ],
)
def test_arguments_the_library_refuses_are_refused_before_sending(
    serve, fake_time, read, named
):
    server = serve(OK)
    fallback = Fallback()

    with pytest.raises(InvalidRequestError) as caught:
        read(client(server.url, fake_time, fallback=fallback))

    assert isinstance(caught.value, cachecore.InvalidRequestError)
    assert caught.value.status is None
    assert caught.value.code == "InvalidParameterException"
    assert caught.value.secret_id == named  # as every other error of the client
    assert (server.seen, fallback.calls) == ([], [])


def test_the_largest_parameter_version_is_sent(serve, fake_time):
    body = json.dumps({"Parameter": {"Name": "/p", "Value": "v"}}).encode()
    server = serve((200, JSON, body))

    client(server.url, fake_time).get_parameter("/p", version=10**18 - 1)

    assert server.seen[0].target.endswith("version=" + "9" * 18)


# -- the token header ------------------------------------------------------------


@pytest.mark.parametrize("token", ["tökén", "tok€n", "トークン"])
def test_a_non_ascii_token_is_sent_as_its_utf8(serve, fake_time, token):
    server = serve(OK)

    client(server.url, fake_time, token=token).get_secret_string("app/db")

    sent = server.seen[0].headers[TOKEN_HEADER.lower()]
    assert sent.encode("latin-1") == token.encode("utf-8")


@pytest.mark.parametrize(
    "token", ["two\r\nlines-Qz7", "line\nbreak-Qz7", "tab\there-Qz7", "nul\x00-Qz7"]
)
def test_a_token_no_header_can_carry_is_a_config_error_that_hides_it(token):
    with pytest.raises(cachecore.ConfigError) as caught:
        SecretsClient(token=token, environ={})

    assert "Qz7" not in str(caught.value)
    assert caught.value.__context__ is None


def test_a_token_of_the_environment_that_no_header_can_carry_names_its_variable():
    with pytest.raises(cachecore.ConfigError, match="AWS_TOKEN") as caught:
        SecretsClient(environ={"AWS_TOKEN": "a\rb-Qz7"})

    assert "Qz7" not in str(caught.value)


# -- fallback arguments ------------------------------------------------------------


def test_a_fallback_that_is_neither_a_reader_nor_a_factory_is_a_config_error():
    with pytest.raises(cachecore.ConfigError, match="fallback"):
        SecretsClient(environ={}, fallback="in-process")
