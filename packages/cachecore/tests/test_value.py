from __future__ import annotations

import dataclasses

import pytest

from cachecore import SecretValue

SENTINEL = "sentinel-Zq9-secret-value"


def test_json_returns_a_fresh_object_every_call():
    value = SecretValue(name="db", secret_string='{"password": "p", "hosts": ["a"]}')

    first = value.json()
    first["password"] = "changed"
    first["hosts"].append("b")

    assert value.json() == {"password": "p", "hosts": ["a"]}
    assert value.json() is not value.json()


def test_repr_and_str_never_show_the_payload():
    text = SecretValue(name="db", secret_string=SENTINEL)
    blob = SecretValue(name="blob", secret_binary=SENTINEL.encode())

    for value in (text, blob):
        assert SENTINEL not in repr(value)
        assert SENTINEL not in str(value)
        assert "db" in repr(text)


def test_value_is_immutable():
    value = SecretValue(name="db", secret_string="x")

    with pytest.raises(dataclasses.FrozenInstanceError):
        value.secret_string = "y"  # type: ignore[misc]


def test_text_decodes_binary_as_utf8():
    assert SecretValue(name="b", secret_binary="é".encode()).text == "é"


def test_text_of_non_utf8_binary_fails_without_showing_the_bytes():
    value = SecretValue(name="blob", secret_binary=b"\xff" + SENTINEL.encode())

    with pytest.raises(ValueError) as caught:
        _ = value.text

    assert SENTINEL not in repr(caught.value)
    assert SENTINEL not in str(caught.value)
    assert caught.value.__context__ is None
