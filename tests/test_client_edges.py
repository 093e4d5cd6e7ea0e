"""cachecore_client at its edges: answers cut short or garbled, use after close,
odd tokens and URLs, secrets kept off error objects, bounded calls.

These came from a break test of the client; each states the behaviour the README
promises, or that a user would expect. Servers are fakes on 127.0.0.1, or a real
cachecore-server in front of moto; every socket is loopback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from client_support import client_env
from support import TOKEN

import cachecore
import cachecore_client as cc
from cachecore_client import RetryPolicy, SecretsClient

SECRET = "sentinel-break6-secret-Qz7"
ONCE = RetryPolicy(attempts=1)


class FakeServer:
    """Accepts on 127.0.0.1; ``reply(conn)`` answers each connection."""

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.requests = 0
        self._reply = reply
        self._open: list[socket.socket] = []
        threading.Thread(target=self._loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            self._reply(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._sock.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeServer]]:
    made: list[FakeServer] = []

    def start(reply: Callable[[socket.socket], None]) -> FakeServer:
        made.append(FakeServer(reply))
        return made[-1]

    yield start
    for server in made:
        server.close()


def answer(status: str, body: bytes) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    return reply


def cut_short(status: str, body: bytes) -> Callable[[socket.socket], None]:
    """Announce the whole body, send half of it, close: a sidecar killed mid-write."""

    def reply(conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )

    return reply


class Recording:
    """A fallback SecretReader that records its uses."""

    def __init__(self) -> None:
        self.reads = 0

    def get_secret_string(self, secret_id: str, **_: object) -> str:
        self.reads += 1
        return "from the fallback"

    get_secret_json = get_secret_binary = get_parameter = get_secret_string


# -- the fallback is used after the sidecar answered -----------------------------


@pytest.mark.parametrize(
    ("status", "aws_type"),
    [
        ("403 Forbidden", "AccessDeniedException"),
        ("404 Not Found", "ResourceNotFoundException"),
    ],
)
def test_a_denial_whose_body_is_cut_short_is_not_served_from_the_fallback(
    fake, status, aws_type
):
    # README: the fallback is used "never when the sidecar answered". Here the
    # status line of a 403/404 arrived, and the fallback still answers instead.
    body = json.dumps({"__type": aws_type, "message": "no"}).encode()
    server = fake(cut_short(status, body))
    fallback = Recording()
    client = SecretsClient(
        server.url, token="t", environ={}, fallback=fallback, retry=ONCE
    )

    with pytest.raises(cc.UnexpectedResponseError) as caught:
        client.get_secret_string("prod/db")

    assert fallback.reads == 0
    assert not isinstance(caught.value, cc.SidecarUnavailableError)
    assert caught.value.status == int(status.split()[0])


def test_a_server_that_answers_garbage_is_not_unavailable(fake):
    # Not cachecore on that port (SSH, a TLS server...): it answered, so this is an
    # UnexpectedResponseError, not "cannot be reached" (which turns the fallback on).
    server = fake(lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    fallback = Recording()
    client = SecretsClient(
        server.url, token="t", environ={}, fallback=fallback, retry=ONCE
    )

    with pytest.raises(cc.UnexpectedResponseError):
        client.get_secret_string("prod/db")
    assert fallback.reads == 0


# -- the answer's bytes ride along on the error ----------------------------------


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]
        todo += [a for a in item.args if isinstance(a, BaseException)]


def test_an_answer_cut_short_leaves_no_part_of_the_secret_on_the_error(fake):
    # http.client.IncompleteRead keeps the bytes read in .partial; it is the
    # __cause__ of the ProtocolError that is the __cause__ of the client's error.
    body = json.dumps({"Name": "db", "SecretString": SECRET + "-and-more"}).encode()
    server = fake(cut_short("200 OK", body * 2))
    client = SecretsClient(server.url, token="t", environ={}, retry=ONCE)

    with pytest.raises(cc.SidecarError) as caught:
        client.get_secret_string("db")

    for item in _chain(caught.value):
        held = repr(vars(item)) if hasattr(item, "__dict__") else ""
        assert SECRET not in held, f"{type(item).__name__} holds the secret"


def test_a_secret_that_is_not_json_is_not_kept_on_the_error(fake):
    # The protocol promises ValueError; json.JSONDecodeError is one, and keeps the
    # whole secret in .doc (the library is careful about exactly this elsewhere).
    text = '{"password": "' + SECRET + '", oops}'
    body = json.dumps({"Name": "db", "SecretString": text}).encode()
    server = fake(answer("200 OK", body))
    client = SecretsClient(server.url, token="t", environ={}, retry=ONCE)

    with pytest.raises(ValueError) as caught:
        client.get_secret_json("db")

    assert type(caught.value) is ValueError  # not a JSONDecodeError with its .doc
    assert SECRET not in repr(getattr(caught.value, "doc", ""))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(vars(caught.value))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("200 OK", cc.UnexpectedResponseError),
        # The status picks the class and a JSON body only refines it: a 400 whose
        # body is not a JSON error (gunicorn's own, say) is an InvalidRequestError,
        # just as a 502 without one is an UpstreamUnavailableError.
        ("400 Bad Request", cc.InvalidRequestError),
    ],
)
def test_a_deeply_nested_answer_is_a_cachecore_error(fake, status, kind):
    server = fake(answer(status, b"[" * 50_000))
    client = SecretsClient(server.url, token="t", environ={}, retry=ONCE)

    with pytest.raises(kind) as caught:  # before the fix: RecursionError
        client.get_secret_string("db")
    assert caught.value.aws_type is None


# -- close(), then a read --------------------------------------------------------


def test_a_read_after_close_does_not_build_a_new_fallback(fake):
    server = fake(
        answer("200 OK", json.dumps({"Name": "s", "SecretString": "v"}).encode())
    )
    built: list[Recording] = []

    def build() -> Recording:
        built.append(Recording())
        return built[-1]

    client = SecretsClient(server.url, token="t", environ={}, fallback=build)
    assert client.get_secret_string("s") == "v"
    client.close()

    with pytest.raises(cc.ClientClosedError):
        client.get_secret_string("s")
    assert built == []


# -- fallback given as a class ---------------------------------------------------


class ZeroArgumentReader(Recording):
    pass


def test_a_fallback_class_is_a_factory_not_a_reader():
    # Callable[[], SecretReader] accepts a class (mypy --strict passes), but
    # isinstance(cls, SecretReader) is true for the class object, so the client
    # calls the unbound methods: TypeError "missing ... 'secret_id'".
    client = SecretsClient(
        "http://127.0.0.1:1",
        token="t",
        environ={},
        fallback=ZeroArgumentReader,
        retry=ONCE,
    )
    assert client.get_secret_string("s") == "from the fallback"


# -- the token --------------------------------------------------------------------


def test_a_token_with_a_line_break_is_a_config_error_that_does_not_show_it(tmp_path):
    # A token file of two lines: the sidecar strips only the ends and accepts it.
    path = tmp_path / "token"
    path.write_text(f"{SECRET}\nsecond line\n")
    with pytest.raises(cachecore.ConfigError) as caught:
        client = SecretsClient(
            "http://127.0.0.1:1",
            environ={"CACHECORE_TOKEN": f"file://{path}"},
            retry=ONCE,
        )
        client.get_secret_string("s")

    assert SECRET not in str(caught.value), "the token is in the error message"


@pytest.mark.parametrize("token", ["tökén-break6", "tok€n-break6"])
def test_a_non_ascii_token_that_the_sidecar_accepts_is_sent_as_it_expects(
    moto_url, start_sidecar, secretsmanager, unique, token
):
    # The sidecar compares the header's bytes to the token's UTF-8; http.client
    # encodes header values as latin-1: "é" is rejected (403), "€" never leaves
    # the client (UnicodeEncodeError). Same CACHECORE_TOKEN on both sides.
    env = client_env(moto_url)
    env["CACHECORE_TOKEN"] = token
    sidecar = start_sidecar(env=env)
    name = unique("token")
    secretsmanager.create_secret(Name=name, SecretString="v")
    client = SecretsClient(
        f"http://127.0.0.1:{sidecar.port}",
        environ={"CACHECORE_TOKEN": token},
        retry=ONCE,
    )
    assert client.get_secret_string(name) == "v"


# -- configuration echoes a password ---------------------------------------------


def test_a_url_with_a_password_is_refused_without_repeating_it():
    with pytest.raises(cachecore.ConfigError) as caught:
        SecretsClient(environ={"CACHECORE_URL": f"http://app:{SECRET}@127.0.0.1:8015"})
    assert SECRET not in str(caught.value)


# -- time -------------------------------------------------------------------------


def test_a_trickling_sidecar_cannot_hold_a_read_for_many_timeouts(fake):
    # timeout bounds each socket read, nothing bounds the call: one byte a
    # second keeps a timeout=2 read going for as long as the server likes.
    body = json.dumps({"Name": "s", "SecretString": "v" * 40}).encode()

    def trickle(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        deadline = time.monotonic() + 12
        for byte in body:
            if time.monotonic() > deadline:
                return
            time.sleep(1.0)
            conn.sendall(bytes([byte]))

    server = fake(trickle)
    client = SecretsClient(server.url, token=TOKEN, environ={}, timeout=2.0, retry=ONCE)
    began = time.monotonic()
    with pytest.raises(cc.SidecarError):
        client.get_secret_string("s")
    assert time.monotonic() - began < 3 * 2.0
