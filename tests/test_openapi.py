"""The OpenAPI document of the HTTP API: valid, complete, and true of a real server.

The last test runs schemathesis (4.x, its pytest integration) against a
``cachecore-server`` process with moto behind it: every answer must have a
documented status, content type, body and headers, and none may be a 5xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import falcon.inspect
import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis.specs.openapi.checks import positive_data_acceptance
from support import HOST, TOKEN, sidecar_env

from cachecore import Config, SecretCache
from cachecore_server import TOKEN_HEADER, create_app

DOCUMENT = resources.files("cachecore_server").joinpath("openapi.json")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_EXAMPLES = 50
AUTH = {TOKEN_HEADER: TOKEN}

#: What the schemathesis run finds in moto: the names the document gives as
#: examples (the demo's), so that the examples phase reads real values.
SECRETS: dict[str, str | bytes] = {
    "demo/db": json.dumps({"username": "app", "password": "openapi-test-value"}),
    "demo/signing-key": bytes(range(16)),
}
PARAMETERS = {
    "/demo/feature-flags": ("StringList", "search,checkout"),
    "/demo/db-password": ("SecureString", "openapi-test-parameter"),
}


def load_document() -> dict[str, Any]:
    return dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))


def test_document_is_valid_openapi_3_1():
    document = load_document()

    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"] == "3.1.0"


def test_every_operation_is_documented_with_its_answers():
    document = load_document()
    for path, item in document["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            responses = item[method]["responses"]
            assert "200" in responses, (method, path)
            assert "400" in responses, (method, path)
            secured = item[method].get("security", document["security"])
            if secured:
                assert {"401", "403"} <= responses.keys(), (method, path)


class NoFetcher:
    def fetch(self, secret_id, *, version_id=None, version_stage=None):
        raise AssertionError("the routes are only listed and refused, never read")


def routes_of(paths: Iterable[tuple[str, set[str]]]) -> dict[str, set[str]]:
    """Each path with its parameters named ``{}``, and the methods given for it."""
    return {re.sub(r"\{[^}]*\}", "{}", path): set(methods) for path, methods in paths}


def test_document_and_app_have_the_same_routes_and_methods():
    config = Config(token=TOKEN)
    app = create_app(SecretCache(NoFetcher(), config), config)
    client = falcon.testing.TestClient(app)
    served = routes_of(
        (route.path, {m.method for m in route.methods if not m.internal})
        for route in falcon.inspect.inspect_routes(app)
    )
    documented = routes_of(
        (path, {m.upper() for m in METHODS if m in item})
        for path, item in load_document()["paths"].items()
    )

    assert documented == served
    for path, methods in documented.items():
        # What a 405 names in Allow is the documented methods too.
        refused = client.simulate_request(
            "DELETE", path.replace("{}", "some/secret"), headers=AUTH
        )
        assert refused.status_code == 405, path
        assert set(refused.headers["allow"].split(", ")) == methods, path


def seed_backends(secretsmanager: Any, ssm: Any) -> None:
    for name, value in SECRETS.items():
        kind = "SecretBinary" if isinstance(value, bytes) else "SecretString"
        try:
            secretsmanager.create_secret(Name=name, **{kind: value})
        except secretsmanager.exceptions.ResourceExistsException:
            secretsmanager.put_secret_value(SecretId=name, **{kind: value})
    for name, (kind, value) in PARAMETERS.items():
        ssm.put_parameter(Name=name, Type=kind, Value=value, Overwrite=True)


@schemathesis.deserializer("text/plain")
def plain_text(ctx: schemathesis.DeserializationContext, response: Any) -> str:
    """Plain-text bodies as text, so that their schemas are checked too."""
    return str(response.content.decode("utf-8"))


CONFIG = schemathesis.Config.from_dict(
    {
        "headers": {TOKEN_HEADER: TOKEN},
        "request-timeout": 15,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
        "phases": {"stateful": {"enabled": False}},
        # The token is a test value; the reproductions must show the names sent.
        "output": {"sanitization": {"enabled": False}},
    }
)
# Loaded from the packaged file when the module is imported, and pointed at the
# server by each call: schemathesis.pytest.from_fixture, which would load it from
# the running server, fails under pytest 9.2 (it sets Node._nodeid, which is gone).
# The fixture checks instead that the server serves this very file.
SCHEMA = schemathesis.openapi.from_path(str(DOCUMENT), config=CONFIG)


def start_with_moto(moto_url, secretsmanager, ssm, start_sidecar, server="gunicorn"):
    seed_backends(secretsmanager, ssm)
    return start_sidecar(
        server=server,
        env=sidecar_env(
            moto_url,
            CACHECORE_TOKEN=TOKEN,
            # Parameter Store is moto too: no request may leave the machine.
            AWS_ENDPOINT_URL_SSM=moto_url,
            AWS_ENDPOINT_URL=moto_url,
        ),
    )


@pytest.fixture(params=["gunicorn", "waitress"])
def sidecar_url(request, moto_url, secretsmanager, ssm, start_sidecar):
    """A cachecore-server with moto behind it, serving the document as packaged."""
    sidecar = start_with_moto(
        moto_url, secretsmanager, ssm, start_sidecar, request.param
    )
    served = sidecar.get("/openapi.json", headers=AUTH)
    assert served.status == 200
    assert json.loads(served.body) == load_document()
    return f"http://{HOST}:{sidecar.port}"


@pytest.mark.timeout(60)
@SCHEMA.parametrize()
# The one server is meant to answer every generated request of an operation.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_running_server_answers_as_documented(case, sidecar_url):
    query = case.query or {}
    if "version" in query and "label" in query:
        # A pair the document forbids in words, as no schema can: a 400 even when
        # each value fits its schema.
        response = case.call(base_url=sidecar_url)
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        assert 400 <= response.status_code < 500, response.text  # never a value
        return
    case.call_and_validate(base_url=sidecar_url)


def test_version_and_label_together_are_refused_even_when_the_version_is_cached(
    moto_url, secretsmanager, ssm, start_sidecar
):
    sidecar = start_with_moto(moto_url, secretsmanager, ssm, start_sidecar)
    route = "/systemsmanager/parameters/get?name=/demo/feature-flags"

    cached = sidecar.get(f"{route}&version=1", headers=AUTH)
    both = sidecar.get(f"{route}&version=1&label=live", headers=AUTH)

    assert cached.status == 200
    assert both.status == 400, (both.status, both.headers, both.text)
    assert json.loads(both.body)["__type"] == "InvalidParameterException"
