"""The error table of the README, row by row, on every route of a running server.

moto sits behind the fault proxy, which makes each upstream cause happen on
demand. Each case reads a name of its own, so no case sees another's backoff.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from faultproxy import FaultProxy
from support import TOKEN, Answer, Sidecar, sidecar_env

from cachecore_server import TOKEN_HEADER

SENTINEL = "sentinel-contract-value-3Rt"
PLAIN = "text/plain; charset=utf-8"
JSON = "application/json"

# route -> (how to ask for a name, the upstream operation, error content type)
ROUTES: dict[str, tuple[Callable[[str], str], str, str]] = {
    "cache": (lambda n: f"/cache?name={n}", "GetSecretValue", PLAIN),
    "secretsmanager": (
        lambda n: f"/secretsmanager/get?secretId={n}",
        "GetSecretValue",
        JSON,
    ),
    "path": (lambda n: f"/v1/{n}", "GetSecretValue", JSON),
    "parameters": (
        lambda n: f"/systemsmanager/parameters/get?name=/{n}",
        "GetParameter",
        JSON,
    ),
}

# cause -> (fault kind or None, expected status, expected __type)
UPSTREAM_CAUSES = {
    "denied": ("deny", 403, "AccessDeniedException"),
    "not found": ("not_found", 404, "ResourceNotFoundException"),
    "throttled": ("throttle", 429, "ThrottlingException"),
    "5xx": ("error500", 502, "InternalServiceError"),
    "decryption": ("decrypt", 502, "DecryptionFailure"),
    "scheduled for deletion": ("deleted", 400, "InvalidRequestException"),
    "timeout": ("black_hole", 504, "RequestTimeout"),
}


@pytest.fixture(scope="module")
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url) as running:
        yield running


@pytest.fixture(scope="module")
def sidecar(moto_url, proxy, start_module_sidecar) -> Sidecar:
    env = sidecar_env(
        moto_url,
        CACHECORE_TOKEN=TOKEN,
        CACHECORE_TTL="0",
        CACHECORE_UPSTREAM_TIMEOUT="1",
        AWS_MAX_ATTEMPTS="1",
    )
    env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = proxy.url
    env["AWS_ENDPOINT_URL_SSM"] = proxy.url
    return start_module_sidecar(env=env)


def fresh_name() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


def check(answer: Answer, status: int, aws_type: str | None, content_type: str):
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == content_type
    assert answer.headers["cache-control"] == "no-store"
    assert SENTINEL.encode() not in answer.body
    assert TOKEN.encode() not in answer.body
    if content_type == JSON:
        body = json.loads(answer.body)
        assert set(body) == {"__type", "message"}
        assert body["__type"] == aws_type
    else:
        assert answer.text.endswith("\n") and answer.text.count("\n") == 1
    if status == 429:
        assert answer.headers["retry-after"].isdigit()


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("cause", sorted(UPSTREAM_CAUSES))
def test_upstream_causes(sidecar, proxy, secretsmanager, route, cause):
    target, operation, content_type = ROUTES[route]
    kind, status, aws_type = UPSTREAM_CAUSES[cause]
    name = fresh_name()
    secretsmanager.create_secret(Name=name, SecretString=SENTINEL)
    if kind == "black_hole":
        proxy.black_hole(operation)
    else:
        proxy.fail(operation, kind)  # type: ignore[arg-type]
    try:
        answer = sidecar.get(target(name), headers={TOKEN_HEADER: TOKEN})
    finally:
        proxy.clear(operation)

    check(answer, status, aws_type, content_type)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_token_missing_is_401_and_wrong_is_403(sidecar, route):
    target, _, content_type = ROUTES[route]
    name = fresh_name()

    missing = sidecar.get(target(name))
    empty = sidecar.get(target(name), headers={TOKEN_HEADER: ""})
    wrong = sidecar.get(target(name), headers={TOKEN_HEADER: TOKEN[:-1]})

    check(missing, 401, "MissingTokenException", content_type)
    check(empty, 401, "MissingTokenException", content_type)
    check(wrong, 403, "InvalidTokenException", content_type)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_forwarded_request_is_400(sidecar, route, header):
    target, _, content_type = ROUTES[route]

    answer = sidecar.get(
        target(fresh_name()), headers={TOKEN_HEADER: TOKEN, header: "198.51.100.4"}
    )

    check(answer, 400, "InvalidRequestException", content_type)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_unknown_parameter_is_400(sidecar, route):
    target, _, content_type = ROUTES[route]
    query = "&" if "?" in target("x") else "?"

    answer = sidecar.get(
        target(fresh_name()) + query + "bogus=1", headers={TOKEN_HEADER: TOKEN}
    )

    check(answer, 400, "InvalidParameterException", content_type)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_wrong_method_is_405(sidecar, route):
    target, _, content_type = ROUTES[route]
    method = "PUT" if route == "cache" else "POST"

    from support import request

    answer = request(
        sidecar.port, method, target(fresh_name()), headers={TOKEN_HEADER: TOKEN}
    )

    check(answer, 405, "MethodNotAllowedException", content_type)
    assert "GET" in answer.headers["allow"]


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/cache", PLAIN),
        ("/cache?name=", PLAIN),
        ("/secretsmanager/get", JSON),
        ("/secretsmanager/get?secretId=a%00b", JSON),
        ("/systemsmanager/parameters/get?name=/a&version=one", JSON),
        ("/secretsmanager/get?secretId=" + "x" * 2049, JSON),
    ],
)
def test_missing_or_malformed_parameter_is_400(sidecar, target, content_type):
    answer = sidecar.get(target, headers={TOKEN_HEADER: TOKEN})

    check(answer, 400, "InvalidParameterException", content_type)


def test_unknown_route_is_404(sidecar):
    answer = sidecar.get("/secretsmanager/list", headers={TOKEN_HEADER: TOKEN})

    check(answer, 404, "UnknownOperationException", JSON)
