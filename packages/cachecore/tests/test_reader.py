from __future__ import annotations

import pytest

from cachecore import Config, ParameterValue, SecretCache, SecretReader, SecretValue


class Backend:
    """Answers a string, a JSON and a binary secret, and one parameter."""

    values = {
        "text": SecretValue("text", secret_string="plain"),
        "json": SecretValue("json", secret_string='{"password": "p"}'),
        "bytes": SecretValue("bytes", secret_binary=b"\x00\xff"),
        "utf8-bytes": SecretValue("utf8-bytes", secret_binary="é".encode()),
        "not-json": SecretValue("not-json", secret_string='{"pw": "sentinel-Rd4", x}'),
        "deep": SecretValue("deep", secret_string="[" * 100_000),
    }

    def fetch(self, secret_id, *, version_id=None, version_stage=None):
        return self.values[secret_id]

    def fetch_parameter(self, name, *, selector=None, with_decryption=False):
        return ParameterValue(name, "String", f"{name}:{selector}:{with_decryption}")


@pytest.fixture
def cache() -> SecretCache:
    backend = Backend()
    return SecretCache(backend, Config(), parameter_fetcher=backend)  # type: ignore[arg-type]


def test_secret_cache_is_a_secret_reader(cache):
    assert isinstance(cache, SecretReader)


def test_reads_return_plain_values(cache):
    assert cache.get_secret_string("text") == "plain"
    assert cache.get_secret_json("json") == {"password": "p"}
    assert cache.get_secret_binary("bytes") == b"\x00\xff"


def test_each_json_read_is_a_fresh_object(cache):
    first = cache.get_secret_json("json")
    first["password"] = "changed"

    assert cache.get_secret_json("json") == {"password": "p"}


def test_a_string_reads_as_utf8_bytes_and_utf8_bytes_read_as_text(cache):
    assert cache.get_secret_binary("text") == b"plain"
    assert cache.get_secret_string("utf8-bytes") == "é"


def test_bytes_that_are_not_utf8_are_not_text(cache):
    with pytest.raises(ValueError, match="not UTF-8"):
        cache.get_secret_string("bytes")


def test_get_parameter_returns_the_value_string(cache):
    assert cache.get_parameter("/p", version=2) == "/p:2:False"
    assert cache.get_parameter("/p", label="prod", with_decryption=True) == (
        "/p:prod:True"
    )


@pytest.mark.parametrize(
    ("secret_id", "reason"),
    [("not-json", "line 1 column 24"), ("deep", "nested too deeply")],
)
def test_a_secret_that_cannot_be_parsed_is_a_value_error_that_holds_none_of_it(
    cache, secret_id, reason
):
    with pytest.raises(ValueError, match=reason) as caught:
        cache.get_secret_json(secret_id)

    assert type(caught.value) is ValueError  # not a JSONDecodeError with its .doc
    assert "sentinel-Rd4" not in repr(vars(caught.value)) + repr(caught.value.args)
    assert caught.value.__context__ is None
