from __future__ import annotations

import datetime as dt

import botocore.session
import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from cachecore import (
    AccessDeniedError,
    ConfigError,
    DecryptionError,
    FetchError,
    InvalidRequestError,
    ParameterStoreFetcher,
    SecretNotFoundError,
    SecretsManagerFetcher,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    translate_error,
)

SENTINEL = "sentinel-fetcher-value-81q"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"


@pytest.fixture
def client():
    session = botocore.session.Session()
    session.set_credentials("test-key", "test-secret")
    made = session.create_client("secretsmanager", region_name="us-east-1")
    yield made
    made.close()


def test_fetch_maps_the_response_to_a_secret_value(client):
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with Stubber(client) as stub:
        stub.add_response(
            "get_secret_value",
            {
                "ARN": ARN,
                "Name": "prod/db",
                "VersionId": "a" * 32,
                "SecretString": SENTINEL,
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": created,
            },
            {"SecretId": "prod/db", "VersionStage": "AWSCURRENT"},
        )
        value = SecretsManagerFetcher(client).fetch(
            "prod/db", version_stage="AWSCURRENT"
        )

    assert value.name == "prod/db"
    assert value.arn == ARN
    assert value.version_id == "a" * 32
    assert value.version_stages == ("AWSCURRENT",)
    assert value.secret_string == SENTINEL
    assert value.created_date == created


def test_timestamps_are_kept_in_utc_whatever_zone_botocore_gave(client):
    eastern = dt.timezone(dt.timedelta(hours=-5))
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=eastern)
    with Stubber(client) as stub:
        stub.add_response(
            "get_secret_value",
            {"Name": "prod/db", "SecretString": SENTINEL, "CreatedDate": created},
        )
        value = SecretsManagerFetcher(client).fetch("prod/db")

    assert value.created_date == created
    assert value.created_date is not None
    assert value.created_date.tzinfo is dt.UTC
    assert value.created_date.hour == 8


def test_fetch_keeps_binary_bytes_exactly(client):
    payload = bytes(range(256))
    with Stubber(client) as stub:
        stub.add_response(
            "get_secret_value",
            {"Name": "blob", "SecretBinary": payload},
            {"SecretId": "blob", "VersionId": "b" * 32},
        )
        value = SecretsManagerFetcher(client).fetch("blob", version_id="b" * 32)

    assert value.secret_binary == payload
    assert value.secret_string is None


EXPECTED = {
    "ResourceNotFoundException": (SecretNotFoundError, 400),
    "InvalidParameterException": (InvalidRequestError, 400),
    "InvalidRequestException": (InvalidRequestError, 400),
    "DecryptionFailure": (DecryptionError, 400),
    "InternalServiceError": (UpstreamUnavailableError, 500),
    "AccessDeniedException": (AccessDeniedError, 400),
    "ThrottlingException": (ThrottledError, 400),
    "UnrecognizedClientException": (AccessDeniedError, 400),
    "ExpiredTokenException": (AccessDeniedError, 400),
}


def test_every_documented_get_secret_value_error_has_an_expectation(client):
    operation = client.meta.service_model.operation_model("GetSecretValue")
    documented = {shape.name for shape in operation.error_shapes}

    assert documented <= set(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), sorted(EXPECTED.items()))
def test_client_errors_map_to_their_class(client, code, expected):
    kind, status = expected
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value",
            service_error_code=code,
            service_message="upstream says no",
            http_status_code=status,
        )
        with pytest.raises(kind) as caught:
            SecretsManagerFetcher(client, max_attempts=1).fetch("prod/db")

    error = caught.value
    assert type(error) is kind
    assert error.code == code
    assert error.secret_id == "prod/db"
    assert "upstream says no" in str(error)
    assert error.__cause__ is not None


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (429, ThrottledError, True),
        (503, UpstreamUnavailableError, True),
        (418, FetchError, False),
    ],
)
def test_unknown_codes_are_classed_by_status(client, status, kind, transient):
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value",
            service_error_code="SomethingNew",
            http_status_code=status,
        )
        with pytest.raises(FetchError) as caught:
            SecretsManagerFetcher(client, max_attempts=1).fetch("x")

    assert type(caught.value) is kind
    assert caught.value.transient is transient


def test_transient_and_permanent_classes():
    assert ThrottledError("x").transient
    assert UpstreamTimeoutError("x").transient
    assert UpstreamUnavailableError("x").transient
    for permanent in (
        SecretNotFoundError,
        AccessDeniedError,
        DecryptionError,
        InvalidRequestError,
    ):
        assert not permanent("x").transient


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), UpstreamTimeoutError),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), UpstreamTimeoutError),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            UpstreamUnavailableError,
        ),
        (NoCredentialsError(), AccessDeniedError),
    ],
)
def test_transport_errors_map_to_their_class(client, raised, kind):
    def fail(**kwargs):
        raise raised

    client.meta.events.register("before-send.secrets-manager.GetSecretValue", fail)

    with pytest.raises(kind):
        SecretsManagerFetcher(client, max_attempts=1).fetch("prod/db")


def test_parameter_validation_error_is_an_invalid_request():
    from botocore.exceptions import ParamValidationError

    error = translate_error(ParamValidationError(report="SecretId too short"), "x")

    assert isinstance(error, InvalidRequestError)


def test_fetch_error_passes_through_translation():
    original = ThrottledError("x")

    assert translate_error(original) is original


def test_endpoint_follows_aws_service_specific_variable(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:2222")

    fetcher = SecretsManagerFetcher(region="us-east-1")

    assert fetcher.client.meta.endpoint_url == "http://127.0.0.1:2222"


def test_endpoint_follows_aws_global_variable(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")

    fetcher = SecretsManagerFetcher(region="us-east-1")

    assert fetcher.client.meta.endpoint_url == "http://127.0.0.1:1111"


def test_explicit_endpoint_beats_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:2222")

    fetcher = SecretsManagerFetcher(
        region="us-east-1", endpoint_url="http://127.0.0.1:3333"
    )

    assert fetcher.client.meta.endpoint_url == "http://127.0.0.1:3333"


def test_no_region_is_a_config_error(monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    with pytest.raises(ConfigError, match="AWS_REGION"):
        SecretsManagerFetcher()


@pytest.mark.parametrize(
    "fetcher_class", [SecretsManagerFetcher, ParameterStoreFetcher]
)
def test_empty_region_variables_are_no_region(monkeypatch, tmp_path, fetcher_class):
    monkeypatch.setenv("AWS_REGION", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    with pytest.raises(ConfigError, match="no AWS region is set"):
        fetcher_class()


def test_timeouts_reach_the_client(monkeypatch):
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    fetcher = SecretsManagerFetcher(
        region="us-east-1", connect_timeout=1.5, read_timeout=2.5, max_attempts=2
    )

    config = fetcher.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (1.5, 2.5)
    assert config.retries["total_max_attempts"] == 2


def test_botocore_max_attempts_variable_wins(monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")

    fetcher = SecretsManagerFetcher(region="us-east-1", max_attempts=5)

    retries = fetcher.client.meta.config.retries
    assert retries["total_max_attempts"] == 1
    assert retries["mode"] == "adaptive"


def test_an_answer_without_a_value_is_an_error_not_an_empty_secret(client):
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"Name": "prod/db"}, {"SecretId": "x"})
        with pytest.raises(UpstreamUnavailableError, match="without a SecretString"):
            SecretsManagerFetcher(client).fetch("x")


def test_an_error_without_a_code_is_classed_by_its_status(client):
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value", service_error_code="503", http_status_code=503
        )
        with pytest.raises(UpstreamUnavailableError) as caught:
            SecretsManagerFetcher(client, max_attempts=1).fetch("x")

    assert caught.value.code == "InternalServiceError"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "not-a-url", "AWS_ENDPOINT_URL"),
        ("AWS_REGION", "us east 1", "AWS_REGION"),
    ],
)
def test_bad_aws_variables_are_config_errors_naming_them(
    monkeypatch, variable, value, named
):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError, match=named):
        SecretsManagerFetcher()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (408, UpstreamTimeoutError),
        (504, UpstreamTimeoutError),
        (403, UpstreamUnavailableError),
        (404, UpstreamUnavailableError),
        (429, ThrottledError),
    ],
)
def test_answers_without_an_aws_code_are_transient(client, status, kind):
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value", service_error_code=str(status), http_status_code=status
        )
        with pytest.raises(FetchError) as caught:
            SecretsManagerFetcher(client, max_attempts=1).fetch("x")

    assert type(caught.value) is kind
    assert caught.value.transient


def test_observers_hear_of_every_call_with_its_outcome_and_latency(client):
    heard = []
    fetcher = SecretsManagerFetcher(client)
    fetcher.add_observer(lambda *call: heard.append(call))
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"Name": "prod/db", "SecretString": "v"})
        stub.add_client_error(
            "get_secret_value", service_error_code="ResourceNotFoundException"
        )
        fetcher.fetch("prod/db")
        with pytest.raises(SecretNotFoundError):
            fetcher.fetch("prod/gone")

    assert [(op, code) for op, _, code in heard] == [
        ("GetSecretValue", None),
        ("GetSecretValue", "ResourceNotFoundException"),
    ]
    assert all(seconds >= 0 for _, seconds, _ in heard)


def test_an_observer_that_raises_never_fails_the_fetch(client, caplog):
    def broken(operation, seconds, code):
        raise RuntimeError("observer bug")

    fetcher = SecretsManagerFetcher(client)
    fetcher.add_observer(broken)
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"Name": "prod/db", "SecretString": "v"})
        value = fetcher.fetch("prod/db")

    assert value.secret_string == "v"
    assert "a fetch observer failed" in caplog.text


def test_the_log_line_of_a_call_carries_its_fields(client, caplog):
    caplog.set_level("INFO", logger="cachecore")
    fetcher = SecretsManagerFetcher(client, max_attempts=1)
    with Stubber(client) as stub:
        stub.add_response(
            "get_secret_value", {"Name": "prod/db", "SecretString": SENTINEL}
        )
        stub.add_client_error("get_secret_value", service_error_code="Throttling")
        fetcher.fetch("prod/db")
        with pytest.raises(ThrottledError):
            fetcher.fetch("prod/db")

    lines = [r for r in caplog.records if r.name == "cachecore._fetchers"]
    assert [r.levelname for r in lines] == ["INFO", "INFO"]
    ok, failed = (r.fields for r in lines)
    assert ok["operation"] == "GetSecretValue"
    assert (ok["name"], ok["outcome"]) == ("prod/db", "ok")
    assert "error" not in ok and ok["latency_ms"] >= 0
    assert (failed["outcome"], failed["error"]) == ("error", "Throttling")
    assert "prod/db" in lines[0].getMessage()
    assert SENTINEL not in caplog.text
