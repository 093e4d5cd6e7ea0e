"""connect_with_rotation against a database of the test's own: a TCP server that
accepts only the current password. The secret rotates in moto; the helper connects
after exactly one refresh, through the sidecar and in-process alike."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from client_support import client_env, in_process, sidecar_client

from cachecore_client import connect_with_rotation


class AuthFailed(Exception):
    """What a database driver raises for a wrong password."""


class FakeDatabase(socketserver.ThreadingTCPServer):
    """Reads one line ``user password``; answers ``OK`` or ``DENIED``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Login)
        self.password = "old"
        self.logins: list[str] = []


class _Login(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        _, _, password = self.rfile.readline(1024).decode().strip().partition(" ")
        database: FakeDatabase = self.server  # type: ignore[assignment]
        database.logins.append(password)
        self.wfile.write(b"OK\n" if password == database.password else b"DENIED\n")


@pytest.fixture
def database() -> Iterator[FakeDatabase]:
    server = FakeDatabase()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def connector(database: FakeDatabase):
    def connect(credentials: dict[str, str]) -> socket.socket:
        conn = socket.create_connection(database.server_address, timeout=5)
        conn.sendall(f"{credentials['username']} {credentials['password']}\n".encode())
        if conn.makefile("rb").readline() != b"OK\n":
            conn.close()
            raise AuthFailed("password authentication failed")
        return conn

    return connect


class CountingReader:
    """Passes reads through, counting the forced refreshes."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.refreshes = 0

    def get_secret_json(self, secret_id, **kwargs):
        self.refreshes += bool(kwargs.get("refresh"))
        return self.reader.get_secret_json(secret_id, **kwargs)


def credential(password: str) -> str:
    return json.dumps({"username": "app", "password": password})


@pytest.fixture(scope="module")
def sidecar(moto_url, start_module_sidecar):
    return start_module_sidecar(env=client_env(moto_url))


@pytest.fixture(params=["sidecar", "in-process"])
def reader(request, moto_url):
    if request.param == "sidecar":
        made = sidecar_client(request.getfixturevalue("sidecar").port)
    else:
        made = in_process(moto_url)
    yield made
    made.close()


def test_after_a_rotation_the_helper_connects_after_exactly_one_refresh(
    reader, database, secretsmanager, unique
):
    name = unique("rotating-db")
    secretsmanager.create_secret(Name=name, SecretString=credential("old"))
    counting = CountingReader(reader)
    is_auth = lambda exc: isinstance(exc, AuthFailed)  # noqa: E731
    connect_with_rotation(counting, name, connector(database), is_auth_failure=is_auth)

    database.password = "new"  # the rotation sets the new password, then the secret
    secretsmanager.put_secret_value(SecretId=name, SecretString=credential("new"))
    conn = connect_with_rotation(
        counting, name, connector(database), is_auth_failure=is_auth
    )
    conn.close()

    assert database.logins == ["old", "old", "new"]
    assert counting.refreshes == 1


def test_a_password_that_is_still_wrong_after_the_refresh_reaches_the_caller(
    reader, database, secretsmanager, unique
):
    name = unique("never-right")
    secretsmanager.create_secret(Name=name, SecretString=credential("stale"))
    counting = CountingReader(reader)

    with pytest.raises(AuthFailed):
        connect_with_rotation(
            counting,
            name,
            connector(database),
            is_auth_failure=lambda exc: isinstance(exc, AuthFailed),
        )

    assert database.logins == ["stale", "stale"]
    assert counting.refreshes == 1
