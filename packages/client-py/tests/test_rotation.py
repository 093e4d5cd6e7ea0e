from __future__ import annotations

import pytest

from cachecore_client import connect_with_rotation


class Denied(Exception):
    pass


class Reader:
    """Hands out 'old' until it is refreshed, then 'new'."""

    def __init__(self) -> None:
        self.refreshes = 0

    def get_secret_json(self, secret_id, *, refresh=False, **kwargs):
        self.refreshes += refresh
        return {"password": "new" if self.refreshes else "old"}


def database(accepts: str):
    attempts: list[str] = []

    def connect(credentials):
        attempts.append(credentials["password"])
        if credentials["password"] != accepts:
            raise Denied("password authentication failed")
        return f"connection as {credentials['password']}"

    return connect, attempts


def is_denied(exc: Exception) -> bool:
    return isinstance(exc, Denied)


def test_the_cached_credentials_connect_without_a_refresh():
    reader = Reader()
    connect, attempts = database(accepts="old")

    assert connect_with_rotation(reader, "db", connect, is_auth_failure=is_denied) == (
        "connection as old"
    )
    assert (attempts, reader.refreshes) == (["old"], 0)


def test_an_auth_failure_refreshes_once_and_connects_once_more():
    reader = Reader()
    connect, attempts = database(accepts="new")

    result = connect_with_rotation(reader, "db", connect, is_auth_failure=is_denied)

    assert result == "connection as new"
    assert (attempts, reader.refreshes) == (["old", "new"], 1)


def test_a_second_auth_failure_reaches_the_caller():
    reader = Reader()
    connect, attempts = database(accepts="newer")

    with pytest.raises(Denied):
        connect_with_rotation(reader, "db", connect, is_auth_failure=is_denied)

    assert (attempts, reader.refreshes) == (["old", "new"], 1)


def test_a_failure_that_is_not_about_auth_is_raised_without_a_refresh():
    reader = Reader()

    def connect(credentials):
        raise ConnectionRefusedError("database down")

    with pytest.raises(ConnectionRefusedError):
        connect_with_rotation(reader, "db", connect, is_auth_failure=is_denied)

    assert reader.refreshes == 0


def test_a_failed_refresh_carries_the_auth_failure_as_its_cause():
    class Unreadable(Reader):
        def get_secret_json(self, secret_id, *, refresh=False, **kwargs):
            if refresh:
                raise LookupError("the refresh failed")
            return super().get_secret_json(secret_id, **kwargs)

    connect, attempts = database(accepts="new")

    with pytest.raises(LookupError) as caught:
        connect_with_rotation(Unreadable(), "db", connect, is_auth_failure=is_denied)

    assert isinstance(caught.value.__cause__, Denied)
    assert attempts == ["old"]
