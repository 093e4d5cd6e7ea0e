from __future__ import annotations

import inspect
import json

import pytest

import cachecore
import cachecore_client
from cachecore_client import _errors
from cachecore_client._client import answer_error

SENTINEL = "sentinel-client-error-7Qz"


def body(aws_type: str) -> bytes:
    return json.dumps({"__type": aws_type, "message": "the server's words"}).encode()


@pytest.mark.parametrize(
    ("status", "aws_type", "kind", "library_kind"),
    [
        (400, "InvalidParameterException", "InvalidRequestError", None),
        (400, "InvalidRequestException", "InvalidRequestError", None),
        (401, "MissingTokenException", "TokenRejectedError", None),
        (403, "InvalidTokenException", "TokenRejectedError", None),
        (403, "AccessDeniedException", "AccessDeniedError", None),
        (404, "ResourceNotFoundException", "SecretNotFoundError", None),
        (404, "ParameterNotFound", "SecretNotFoundError", None),
        (404, "ParameterVersionNotFound", "SecretNotFoundError", None),
        (404, "UnknownOperationException", "UnexpectedResponseError", "FetchError"),
        (405, "MethodNotAllowedException", "UnexpectedResponseError", "FetchError"),
        (429, "ThrottlingException", "ThrottledError", None),
        (429, "TooManyRequestsException", "ThrottledError", None),
        (500, "InternalFailure", "UnexpectedResponseError", "FetchError"),
        (502, "InternalServiceError", "UpstreamUnavailableError", None),
        (502, "DecryptionFailure", "DecryptionError", None),
        (502, "InvalidKeyId", "DecryptionError", None),
        (503, "ServiceUnavailableException", "SidecarNotReadyError", None),
        (504, "RequestTimeout", "UpstreamTimeoutError", None),
    ],
)
def test_each_answer_becomes_the_class_of_its_meaning(
    status, aws_type, kind, library_kind
):
    error = answer_error(status, {}, body(aws_type), "app/db")

    assert type(error) is getattr(cachecore_client, kind)
    assert (error.status, error.aws_type) == (status, aws_type)
    assert str(error) == "the server's words" or kind == "UnexpectedResponseError"
    base = getattr(cachecore, library_kind or kind, None)
    if base is not None:
        assert isinstance(error, base)
        assert error.code == aws_type
        assert error.secret_id == "app/db"


def test_each_library_error_has_a_client_subclass_of_the_same_name():
    for name, obj in inspect.getmembers(cachecore, inspect.isclass):
        if issubclass(obj, cachecore.FetchError) and obj is not cachecore.FetchError:
            assert issubclass(getattr(cachecore_client, name), obj), name


def test_a_rejected_token_is_a_permission_error_and_not_a_fetch_error():
    error = answer_error(401, {}, body("MissingTokenException"), "x")

    assert isinstance(error, PermissionError)
    assert isinstance(error, cachecore.CacheError)
    assert not isinstance(error, cachecore.FetchError)


def test_a_body_that_is_not_a_json_error_is_never_repeated():
    error = answer_error(502, {}, f"<html>{SENTINEL}</html>".encode(), "x")

    assert isinstance(error, cachecore_client.UpstreamUnavailableError)
    assert error.aws_type is None
    assert SENTINEL not in str(error) + repr(error)
    assert "HTTP 502" in str(error)


def test_repr_shows_status_and_type():
    error = answer_error(404, {}, body("ResourceNotFoundException"), "app/db")

    assert repr(error) == (
        "SecretNotFoundError(\"the server's words\", secret_id='app/db', "
        "status=404, aws_type='ResourceNotFoundException')"
    )


def test_every_error_class_is_exported():
    classes = {
        name
        for name, obj in inspect.getmembers(_errors, inspect.isclass)
        if issubclass(obj, cachecore.CacheError) and obj.__module__ == _errors.__name__
    }

    assert classes <= set(cachecore_client.__all__)


def test_all_is_sorted_and_every_name_exists():
    assert cachecore_client.__all__ == sorted(cachecore_client.__all__)
    for name in cachecore_client.__all__:
        assert hasattr(cachecore_client, name), name


def test_importing_the_client_does_not_import_botocore():
    import subprocess
    import sys

    code = "import sys, cachecore_client; print('botocore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert out.stdout.strip() == "False", out.stderr
