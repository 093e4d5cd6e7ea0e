"""SSM parameters: the fetcher on a stubbed client, the cache's policy for them."""

from __future__ import annotations

import datetime as dt

import botocore.session
import pytest
from botocore.stub import Stubber

from cachecore import (
    Config,
    DecryptionError,
    InvalidRequestError,
    ParameterStoreFetcher,
    ParameterValue,
    SecretCache,
    SecretNotFoundError,
    ThrottledError,
)

SENTINEL = "sentinel-parameter-value-7Yu"


@pytest.fixture
def client():
    session = botocore.session.Session()
    session.set_credentials("test-key", "test-secret")
    made = session.create_client("ssm", region_name="us-east-1")
    yield made
    made.close()


def parameter(value=SENTINEL, **extra):
    return {
        "Parameter": {
            "Name": "/app/db",
            "Type": "SecureString",
            "Value": value,
            "Version": 3,
            "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db",
            "DataType": "text",
            "LastModifiedDate": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
            **extra,
        }
    }


def test_fetch_parameter_maps_the_answer(client):
    with Stubber(client) as stub:
        stub.add_response(
            "get_parameter",
            parameter(Selector=":3"),
            {"Name": "/app/db:3", "WithDecryption": True},
        )
        value = ParameterStoreFetcher(client).fetch_parameter(
            "/app/db", selector="3", with_decryption=True
        )

    assert (value.name, value.type, value.value) == (
        "/app/db",
        "SecureString",
        SENTINEL,
    )
    assert (value.version, value.selector, value.data_type) == (3, ":3", "text")
    assert SENTINEL not in repr(value)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ParameterNotFound", SecretNotFoundError),
        ("ParameterVersionNotFound", SecretNotFoundError),
        ("InvalidKeyId", DecryptionError),
        ("ThrottlingException", ThrottledError),
    ],
)
def test_parameter_store_errors_map_to_the_tree(client, code, kind):
    with Stubber(client) as stub:
        stub.add_client_error("get_parameter", service_error_code=code)
        with pytest.raises(kind) as caught:
            ParameterStoreFetcher(client, max_attempts=1).fetch_parameter("/x")

    assert caught.value.code == code
    assert str(caught.value).startswith("Parameter Store answered")


def test_every_documented_get_parameter_error_is_mapped(client):
    from cachecore._fetchers import _CODES

    operation = client.meta.service_model.operation_model("GetParameter")

    for shape in operation.error_shapes:
        assert shape.name in _CODES, shape.name


def test_endpoint_follows_aws_ssm_variable(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:4444")

    fetcher = ParameterStoreFetcher(region="us-east-1")

    assert fetcher.client.meta.endpoint_url == "http://127.0.0.1:4444"


class FakeParameters:
    def __init__(self):
        self.calls = []
        self.error = None

    def fetch_parameter(self, name, *, selector=None, with_decryption=False):
        self.calls.append((name, selector, with_decryption))
        if self.error is not None:
            raise self.error
        return ParameterValue(name=name, type="String", value=f"{name}|{selector}")


def make_cache(parameters, now, **settings):
    settings.setdefault("ttl_jitter", 0)
    return SecretCache(
        None,  # type: ignore[arg-type]  # no secrets in these tests
        Config(**settings),
        clock=lambda: now[0],
        parameter_fetcher=parameters,
    )


def test_parameters_are_cached_by_name_selector_and_decryption():
    parameters = FakeParameters()
    cache = make_cache(parameters, [0.0])

    cache.get_parameter("/p")
    cache.get_parameter("/p")
    cache.get_parameter("/p", version=2)
    cache.get_parameter("/p", label="prod")
    cache.get_parameter("/p", with_decryption=True)

    assert parameters.calls == [
        ("/p", None, False),
        ("/p", "2", False),
        ("/p", "prod", False),
        ("/p", None, True),
    ]


def test_parameters_keep_their_own_ttl_when_one_is_set(fetcher):
    parameters = FakeParameters()
    now = [0.0]
    cache = SecretCache(
        fetcher,
        Config(ttl=100, parameter_ttl=10, ttl_jitter=0),
        clock=lambda: now[0],
        parameter_fetcher=parameters,
    )
    cache.get("db")
    cache.get_parameter("/p")
    now[0] = 10.0

    cache.get("db")
    cache.get_parameter("/p")

    assert len(fetcher.calls) == 1
    assert len(parameters.calls) == 2


def test_parameters_follow_the_same_stale_policy():
    parameters = FakeParameters()
    now = [0.0]
    cache = make_cache(parameters, now, ttl=10)
    cache.get_parameter("/p")
    parameters.error = ThrottledError("slow down", secret_id="/p")
    now[0] = 11

    lookup = cache.lookup_parameter("/p")

    assert (lookup.state, lookup.value.value) == ("stale", "/p|None")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"version": 1, "label": "x"}, "not both"),
        ({"version": 0}, "positive integer"),
        ({"version": 10**18}, "at most 18 digits"),  # as the sidecar reads one
        ({"version": "1"}, "positive integer"),
        ({"label": ""}, "label must be"),
    ],
)
def test_impossible_parameter_selectors_raise_without_a_call(kwargs, problem):
    parameters = FakeParameters()
    cache = make_cache(parameters, [0.0])

    with pytest.raises(InvalidRequestError, match=problem):
        cache.get_parameter("/p", **kwargs)

    assert parameters.calls == []


def test_parameters_need_a_parameter_fetcher():
    from cachecore import ConfigError

    cache = SecretCache(None, Config())  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="parameter_fetcher"):
        cache.get_parameter("/p")
