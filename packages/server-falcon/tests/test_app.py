"""The Falcon app against an in-memory fetcher: routes, parsing and the error table."""

from __future__ import annotations

import base64
import datetime as dt
import json

import falcon.testing
import pytest

from cachecore import (
    AccessDeniedError,
    Config,
    DecryptionError,
    FetchError,
    InvalidRequestError,
    ParameterValue,
    SecretCache,
    SecretNotFoundError,
    SecretValue,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from cachecore_server import TOKEN_HEADER, ApiError, create_app, parse_query

TOKEN = "sentinel-token-app-7Hq"
SENTINEL = "sentinel-secret-value-app-Kp2"


class MemoryFetcher:
    def __init__(self):
        self.values: dict[str, SecretValue] = {}
        self.errors: dict[str, Exception] = {}
        self.calls: list[tuple[str, str | None, str | None]] = []

    def fetch(self, secret_id, *, version_id=None, version_stage=None):
        self.calls.append((secret_id, version_id, version_stage))
        if secret_id in self.errors:
            raise self.errors[secret_id]
        return self.values[secret_id]


@pytest.fixture
def fetcher():
    memory = MemoryFetcher()
    memory.values["db"] = SecretValue(
        name="db",
        arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
        version_id="v1",
        version_stages=("AWSCURRENT",),
        secret_string=json.dumps({"password": SENTINEL}),
        created_date=dt.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC),
    )
    memory.values["blob"] = SecretValue(name="blob", secret_binary=bytes(range(256)))
    return memory


def make_client(fetcher, **settings):
    settings.setdefault("token", TOKEN)
    config = Config(**settings)
    return falcon.testing.TestClient(create_app(SecretCache(fetcher, config), config))


@pytest.fixture
def client(fetcher):
    return make_client(fetcher)


AUTH = {TOKEN_HEADER: TOKEN}


def assert_clean(result):
    assert SENTINEL not in result.text
    assert TOKEN not in result.text
    assert result.headers["cache-control"] == "no-store"


# --- query parsing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("name=a+b", "a+b"),
        ("name=a%2Bb", "a+b"),
        ("name=a%20b", "a b"),
        ("name=%2Fleading/slash", "/leading/slash"),
        ("name=caf%C3%A9", "café"),
        ("name=x%3D%40%21", "x=@!"),
        (
            "name=arn:aws:secretsmanager:us-east-1:1:secret:db-Ab",
            "arn:aws:secretsmanager:us-east-1:1:secret:db-Ab",
        ),
        ("&name=a&&", "a"),
    ],
)
def test_query_names_arrive_exactly(raw, name):
    assert parse_query(raw, ["name"]) == {"name": name}


def test_raw_utf8_bytes_in_the_query_are_read_as_utf8():
    raw = "name=café".encode().decode("latin-1")  # how WSGI hands over raw bytes

    assert parse_query(raw, ["name"]) == {"name": "café"}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("name=%FF", "not UTF-8"),
        ("nmae=db", "unknown parameter 'nmae'"),
        ("name=a&name=b", "more than once"),
    ],
)
def test_query_problems_are_400_naming_the_problem(raw, problem):
    with pytest.raises(ApiError) as caught:
        parse_query(raw, ["name"])

    assert caught.value.status == falcon.HTTP_400
    assert problem in caught.value.message


# --- success ---------------------------------------------------------------


def test_legacy_route_answers_the_raw_secret_string(client):
    for method in ("GET", "POST"):
        result = client.simulate_request(
            method, "/cache", query_string="name=db&refresh=0", headers=AUTH
        )

        assert result.status_code == 200
        assert result.headers["content-type"] == "text/plain; charset=utf-8"
        assert json.loads(result.text) == {"password": SENTINEL}


def test_legacy_route_answers_binary_as_raw_bytes(client):
    result = client.simulate_get("/cache", query_string="name=blob", headers=AUTH)

    assert result.headers["content-type"] == "application/octet-stream"
    assert result.content == bytes(range(256))


def test_aws_route_answers_get_secret_value_json(client):
    result = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=db", headers=AUTH
    )

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    body = result.json
    assert body == {
        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
        "Name": "db",
        "VersionId": "v1",
        "SecretString": json.dumps({"password": SENTINEL}),
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": "1767323045.25",
    }


def test_aws_route_answers_binary_as_base64(client):
    result = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=blob", headers=AUTH
    )

    assert base64.b64decode(result.json["SecretBinary"]) == bytes(range(256))
    assert "SecretString" not in result.json


def test_answers_say_miss_then_hit(client):
    first = client.simulate_get("/cache", query_string="name=db", headers=AUTH)
    second = client.simulate_get("/cache", query_string="name=db", headers=AUTH)

    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.headers["age"] == "0"
    assert first.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/cache", "name=db&refresh=1"),
        ("/cache", "name=db&refresh=true"),
        ("/secretsmanager/get", "secretId=db&refreshNow=true"),
    ],
)
def test_refresh_flags_fetch_anew(fetcher, client, path, query):
    client.simulate_get("/cache", query_string="name=db", headers=AUTH)

    result = client.simulate_get(path, query_string=query, headers=AUTH)

    assert result.headers["x-cache"] == "MISS"
    assert len(fetcher.calls) == 2


def test_version_parameters_reach_the_fetcher(fetcher, client):
    client.simulate_get(
        "/secretsmanager/get",
        query_string="secretId=db&versionStage=AWSPENDING",
        headers=AUTH,
    )
    client.simulate_get("/cache", query_string="name=db&versionId=v1", headers=AUTH)

    assert fetcher.calls == [("db", None, "AWSPENDING"), ("db", "v1", None)]


def test_ping_needs_no_token(client):
    result = client.simulate_get("/ping")

    assert (result.status_code, result.text) == (200, "healthy")


# --- errors ----------------------------------------------------------------


FETCH_ERRORS = [
    (SecretNotFoundError, 404, "ResourceNotFoundException"),
    (AccessDeniedError, 403, "AccessDeniedException"),
    (ThrottledError, 429, "ThrottlingException"),
    (UpstreamUnavailableError, 502, "InternalServiceError"),
    (DecryptionError, 502, "DecryptionFailure"),
    (UpstreamTimeoutError, 504, "RequestTimeout"),
    (InvalidRequestError, 400, "InvalidRequestException"),
    (FetchError, 502, "InternalServiceError"),
]


@pytest.mark.parametrize(("kind", "status", "aws_type"), FETCH_ERRORS)
def test_fetch_errors_follow_the_error_table_on_the_aws_route(
    fetcher, client, kind, status, aws_type
):
    fetcher.errors["db"] = kind("upstream said no", secret_id="db")

    result = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=db", headers=AUTH
    )

    assert result.status_code == status
    assert result.headers["content-type"] == "application/json"
    assert result.json == {"__type": aws_type, "message": "upstream said no"}
    assert ("retry-after" in result.headers) == (status == 429)
    assert_clean(result)


@pytest.mark.parametrize(("kind", "status", "aws_type"), FETCH_ERRORS)
def test_fetch_errors_follow_the_error_table_on_the_legacy_route(
    fetcher, client, kind, status, aws_type
):
    fetcher.errors["db"] = kind("upstream said no", secret_id="db")

    result = client.simulate_post("/cache", query_string="name=db", headers=AUTH)

    assert result.status_code == status
    assert result.headers["content-type"] == "text/plain; charset=utf-8"
    assert result.text == "upstream said no\n"
    assert_clean(result)


@pytest.mark.parametrize(
    ("path", "query", "problem"),
    [
        ("/cache", "", "the name parameter is required"),
        ("/cache", "name=", "the name parameter is required"),
        ("/cache", "name=db&refresh=maybe", "refresh must be 1, 0, true or false"),
        ("/cache", "name=db&versionStage=", "versionStage parameter must not be empty"),
        ("/secretsmanager/get", "", "the secretId parameter is required"),
        ("/secretsmanager/get", "secretId=db&bogus=1", "unknown parameter 'bogus'"),
        ("/secretsmanager/get", "secretId=db&refreshNow=yes", "refreshNow must be"),
        ("/secretsmanager/get", "secretId=a%00b", "control characters"),
    ],
)
def test_bad_parameters_are_400_naming_the_problem(
    fetcher, client, path, query, problem
):
    result = client.simulate_get(path, query_string=query, headers=AUTH)

    assert result.status_code == 400
    assert problem in result.text
    assert fetcher.calls == []
    assert_clean(result)


def test_missing_token_is_401(client):
    for path, query in (("/cache", "name=db"), ("/secretsmanager/get", "secretId=db")):
        result = client.simulate_get(path, query_string=query)

        assert result.status_code == 401
        assert TOKEN_HEADER in result.text
        assert_clean(result)


def test_empty_token_is_401(client):
    result = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=db", headers={TOKEN_HEADER: ""}
    )

    assert result.status_code == 401


@pytest.mark.parametrize("sent", ["wrong", TOKEN + "x", TOKEN[:-1], "é"])
def test_wrong_token_is_403(fetcher, client, sent):
    result = client.simulate_get(
        "/secretsmanager/get",
        query_string="secretId=db",
        headers={TOKEN_HEADER: sent.encode().decode("latin-1")},
    )

    assert result.status_code == 403
    assert result.json["__type"] == "InvalidTokenException"
    assert fetcher.calls == []
    assert_clean(result)


def test_auth_none_serves_without_a_token(fetcher):
    client = make_client(fetcher, token=None, auth="none")

    result = client.simulate_post("/cache", query_string="name=db&refresh=0")

    assert result.status_code == 200


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_forwarded_requests_are_refused(fetcher, client, header):
    result = client.simulate_get(
        "/secretsmanager/get",
        query_string="secretId=db",
        headers={**AUTH, header: "203.0.113.7"},
    )

    assert result.status_code == 400
    assert header in result.json["message"]
    assert fetcher.calls == []


def test_wrong_method_is_405_with_allow(client):
    result = client.simulate_post(
        "/secretsmanager/get", query_string="secretId=db", headers=AUTH
    )

    assert result.status_code == 405
    assert result.json["__type"] == "MethodNotAllowedException"
    assert "GET" in result.headers["allow"]


def test_unknown_route_is_404_without_a_secret_lookup(fetcher, client):
    result = client.simulate_get("/secretsmanager/../cache", headers=AUTH)

    assert result.status_code == 404
    assert result.json["__type"] == "UnknownOperationException"
    assert fetcher.calls == []


def test_unexpected_error_is_500_without_details(fetcher, client):
    fetcher.errors["db"] = RuntimeError(SENTINEL)

    result = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=db", headers=AUTH
    )

    assert result.status_code == 500
    assert result.json["__type"] == "InternalFailure"
    assert_clean(result)


def test_bad_request_then_good_request_still_answers(fetcher, client):
    fetcher.errors["missing"] = SecretNotFoundError("gone", secret_id="missing")

    bad = client.simulate_get("/cache", query_string="name=missing", headers=AUTH)
    good = client.simulate_get("/cache", query_string="name=db", headers=AUTH)

    assert (bad.status_code, good.status_code) == (404, 200)


def clocked_client(fetcher, ttl):
    """A client whose cache reads the time from ``now[0]``, moved by the test;
    returns ``(now, client)``."""
    now = [1000.0]
    config = Config(token=TOKEN, ttl=ttl, ttl_jitter=0)
    cache = SecretCache(fetcher, config, clock=lambda: now[0])
    return now, falcon.testing.TestClient(create_app(cache, config))


def test_stale_answer_is_marked_stale_with_its_age(fetcher):
    now, client = clocked_client(fetcher, ttl=10)
    client.simulate_get("/cache", query_string="name=db", headers=AUTH)
    now[0] += 11
    fetcher.errors["db"] = ThrottledError("slow down", secret_id="db")

    for path, query in (("/cache", "name=db"), ("/secretsmanager/get", "secretId=db")):
        result = client.simulate_get(path, query_string=query, headers=AUTH)

        assert result.status_code == 200
        assert (result.headers["x-cache"], result.headers["age"]) == ("STALE", "11")


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/cache", "GET, POST"),
        ("DELETE", "/cache", "GET, POST"),
        ("FOO", "/secretsmanager/get", "GET"),
        ("POST", "/ping", "GET"),
    ],
)
def test_other_methods_are_405_naming_the_allowed_ones(
    fetcher, client, method, path, allow
):
    result = client.simulate_request(method, path, headers=AUTH)

    assert result.status_code == 405
    assert result.headers["allow"] == allow
    assert result.headers["cache-control"] == "no-store"
    assert fetcher.calls == []


@pytest.mark.parametrize("query", ["name=demo%zz", "name=demo%", "name=%2"])
def test_a_percent_that_starts_no_escape_is_400(fetcher, client, query):
    result = client.simulate_get("/cache", query_string=query, headers=AUTH)

    assert result.status_code == 400
    assert "must start an escape" in result.text
    assert fetcher.calls == []


def test_ping_takes_no_parameters(client):
    result = client.simulate_get("/ping", query_string="x=1")

    assert result.status_code == 400
    assert "unknown parameter 'x'" in result.text


def test_error_message_is_one_line_whatever_upstream_said(fetcher, client):
    fetcher.errors["db"] = InvalidRequestError("line one\nline two\r\n  three")

    legacy = client.simulate_get("/cache", query_string="name=db", headers=AUTH)
    aws = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=db", headers=AUTH
    )

    assert legacy.text == "line one line two three\n"
    assert aws.json["message"] == "line one line two three"


def test_lone_surrogate_in_a_secret_does_not_fail_the_answer(fetcher, client):
    fetcher.values["odd"] = SecretValue(name="odd", secret_string='{"k": "\ud800"}')

    legacy = client.simulate_get("/cache", query_string="name=odd", headers=AUTH)
    aws = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=odd", headers=AUTH
    )

    assert (legacy.status_code, aws.status_code) == (200, 200)
    assert json.loads(aws.json["SecretString"]) == {"k": "\ud800"}


class MemoryParameters:
    def __init__(self):
        self.calls = []

    def fetch_parameter(self, name, *, selector=None, with_decryption=False):
        self.calls.append((name, selector, with_decryption))
        if name == "/missing":
            raise SecretNotFoundError("no such parameter", code="ParameterNotFound")
        return ParameterValue(
            name=name,
            type="SecureString",
            value=SENTINEL if with_decryption else "ciphertext",
            version=2,
            arn="arn:aws:ssm:us-east-1:123456789012:parameter" + name,
            data_type="text",
            last_modified_date=dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        )


@pytest.fixture
def ssm_client(fetcher):
    parameters = MemoryParameters()
    config = Config(token=TOKEN)
    cache = SecretCache(fetcher, config, parameter_fetcher=parameters)
    return falcon.testing.TestClient(create_app(cache, config)), parameters


def test_parameter_route_answers_get_parameter_json(ssm_client):
    client, parameters = ssm_client

    result = client.simulate_get(
        "/systemsmanager/parameters/get",
        query_string="name=/app/db&version=2&withDecryption=true",
        headers=AUTH,
    )

    assert result.status_code == 200
    assert result.json == {
        "Parameter": {
            "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db",
            "DataType": "text",
            "LastModifiedDate": "2026-01-02T03:04:05.678Z",
            "Name": "/app/db",
            "Selector": None,
            "SourceResult": None,
            "Type": "SecureString",
            "Value": SENTINEL,
            "Version": 2,
        },
        "ResultMetadata": {},
    }
    assert parameters.calls == [("/app/db", "2", True)]
    assert result.headers["x-cache"] == "MISS"


@pytest.mark.parametrize(
    ("query", "status", "aws_type"),
    [
        ("", 400, "InvalidParameterException"),
        ("name=/a&version=x", 400, "InvalidParameterException"),
        ("name=/a&version=1&label=l", 400, "InvalidParameterException"),
        ("name=/a&withDecryption=maybe", 400, "InvalidParameterException"),
        ("name=/missing", 404, "ParameterNotFound"),
    ],
)
def test_parameter_route_errors(ssm_client, query, status, aws_type):
    client, _ = ssm_client

    result = client.simulate_get(
        "/systemsmanager/parameters/get", query_string=query, headers=AUTH
    )

    assert result.status_code == status
    assert result.json["__type"] == aws_type
    assert_clean(result)


@pytest.mark.parametrize(
    ("path", "secret_id"),
    [
        ("/v1/db", "db"),
        ("/v1/prod/app/db", "prod/app/db"),
        ("/v1//leading", "/leading"),
        ("/v1/a/../b", "a/../b"),
        ("/v1/a+b=c@d!e", "a+b=c@d!e"),
    ],
)
def test_path_form_reads_the_id_exactly(fetcher, client, path, secret_id):
    fetcher.values[secret_id] = fetcher.values["db"]

    result = client.simulate_get(path, headers=AUTH)

    assert result.status_code == 200
    assert fetcher.calls == [(secret_id, None, None)]


def test_path_form_takes_version_parameters(fetcher, client):
    result = client.simulate_get(
        "/v1/db", query_string="versionStage=AWSPREVIOUS&refreshNow=true", headers=AUTH
    )

    assert result.status_code == 200
    assert fetcher.calls == [("db", None, "AWSPREVIOUS")]


def test_openapi_document_is_served(client):
    result = client.simulate_get("/openapi.json", headers=AUTH)

    assert result.status_code == 200
    assert result.json["openapi"].startswith("3.1")


@pytest.mark.parametrize("path", ["//v1/prod/db", "///v1/prod/db", "//cache"])
def test_a_path_with_two_leading_slashes_reaches_no_route(fetcher, client, path):
    result = client.simulate_get(path, query_string="name=db", headers=AUTH)

    assert result.status_code == 404
    assert fetcher.calls == []


def test_an_overlong_parameter_version_is_400(ssm_client):
    client, parameters = ssm_client

    result = client.simulate_get(
        "/systemsmanager/parameters/get",
        query_string="name=/a&version=" + "9" * 4301,
        headers=AUTH,
    )

    assert result.status_code == 400
    assert parameters.calls == []


# --- hits answered past Falcon ------------------------------------------------


HITS = [
    ("GET", "/cache", "name=db"),
    ("POST", "/cache", "name=db"),
    ("GET", "/cache", "name=blob"),
    ("GET", "/secretsmanager/get", "secretId=db"),
    ("GET", "/secretsmanager/get", "secretId=blob"),
]


@pytest.mark.parametrize(("method", "path", "query"), HITS)
def test_a_hit_is_answered_as_the_miss_was_but_for_its_cache_headers(
    client, method, path, query
):
    miss = client.simulate_request(method, path, query_string=query, headers=AUTH)
    hit = client.simulate_request(method, path, query_string=query, headers=AUTH)

    assert (miss.status, hit.status) == ("200 OK", "200 OK")
    assert hit.content == miss.content
    assert [name for name, _ in hit.headers.items()] == [
        name for name, _ in miss.headers.items()
    ]
    assert dict(hit.headers) == {**miss.headers, "x-cache": "HIT"}


def test_the_age_of_a_hit_is_whole_seconds_since_the_fetch(fetcher):
    now, client = clocked_client(fetcher, ttl=100)
    client.simulate_get("/cache", query_string="name=db", headers=AUTH)

    ages = []
    routes = (("/cache", "name=db"), ("/secretsmanager/get", "secretId=db"))
    for step in (0.4, 0.6, 41.9, 58.1):
        now[0] += step
        for path, query in routes:
            result = client.simulate_get(path, query_string=query, headers=AUTH)
            ages.append((result.headers["x-cache"], result.headers["age"]))

    assert ages == [("HIT", "0")] * 2 + [("HIT", "1")] * 2 + [("HIT", "42")] * 2 + [
        ("MISS", "0"),
        ("HIT", "0"),
    ]


@pytest.mark.parametrize(
    ("method", "query", "headers", "status"),
    [
        ("GET", "secretId=db", {}, 401),
        ("GET", "secretId=db", {TOKEN_HEADER: ""}, 401),
        ("GET", "secretId=db", {TOKEN_HEADER: TOKEN + "x"}, 403),
        ("GET", "secretId=db", {**AUTH, "X-Forwarded-For": "203.0.113.7"}, 400),
        ("GET", "secretId=db", {**AUTH, "Forwarded": "for=203.0.113.7"}, 400),
        ("POST", "secretId=db", AUTH, 405),
        ("HEAD", "secretId=db", AUTH, 405),
        ("GET", "secretId=db&refresh=1", AUTH, 400),
        ("GET", "secretId=db%", AUTH, 400),
        ("GET", "secretId=", AUTH, 400),
        ("GET", "secretid=db", AUTH, 400),
    ],
)
def test_a_cached_secret_is_refused_as_an_unknown_one_is(
    client, method, query, headers, status
):
    client.simulate_get("/secretsmanager/get", query_string="secretId=db", headers=AUTH)

    result = client.simulate_request(
        method, "/secretsmanager/get", query_string=query, headers=headers
    )

    assert result.status_code == status
    assert result.headers["cache-control"] == "no-store"
    assert "x-cache" not in result.headers


def test_a_hit_after_a_refresh_answers_the_new_value(fetcher, client):
    client.simulate_get("/secretsmanager/get", query_string="secretId=db", headers=AUTH)
    client.simulate_get("/cache", query_string="name=db", headers=AUTH)
    fetcher.values["db"] = SecretValue(name="db", secret_string="rotated")

    client.simulate_get("/cache", query_string="name=db&refresh=1", headers=AUTH)
    raw = client.simulate_get("/cache", query_string="name=db", headers=AUTH)
    aws = client.simulate_get(
        "/secretsmanager/get", query_string="secretId=db", headers=AUTH
    )

    assert (raw.headers["x-cache"], raw.text) == ("HIT", "rotated")
    assert (aws.headers["x-cache"], aws.json["SecretString"]) == ("HIT", "rotated")


def test_a_hit_after_a_rotation_has_the_new_length_and_age(fetcher):
    now, client = clocked_client(fetcher, ttl=100)
    fetcher.values["db"] = SecretValue(name="db", secret_string="short")
    client.simulate_get("/cache", query_string="name=db", headers=AUTH)
    now[0] += 7.5
    before = client.simulate_get("/cache", query_string="name=db", headers=AUTH)

    fetcher.values["db"] = SecretValue(name="db", secret_string="a longer value")
    client.simulate_get("/cache", query_string="name=db&refresh=1", headers=AUTH)
    after = client.simulate_get("/cache", query_string="name=db", headers=AUTH)

    seen = [
        (r.headers["x-cache"], r.headers["age"], r.headers["content-length"], r.text)
        for r in (before, after)
    ]
    assert seen == [("HIT", "7", "5", "short"), ("HIT", "0", "14", "a longer value")]


def test_hits_on_many_names_hold_no_more_than_the_cache_and_its_bodies():
    import tracemalloc

    class FreshFetcher:
        """Makes a new value of 50 kB at each fetch, as boto3 does."""

        def fetch(self, secret_id, *, version_id=None, version_stage=None):
            return SecretValue(name=secret_id, secret_string=secret_id * 5000)

    config = Config(token=TOKEN, max_entries=10)
    client = falcon.testing.TestClient(
        create_app(SecretCache(FreshFetcher(), config), config)
    )
    tracemalloc.start()
    try:
        for index in range(300):
            for path, query in (
                ("/cache", f"name=n{index:08d}"),
                ("/secretsmanager/get", f"secretId=n{index:08d}"),
            ):
                for _ in range(2):  # a miss, then a hit through the lane
                    answer = client.simulate_get(path, query_string=query, headers=AUTH)
                    assert answer.status_code == 200
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # 300 names of 50 kB are 15 MB; 10 cached values and the bodies' 512 KiB
    # budget are about 1.5 MB.
    assert held < 4_000_000


def test_a_hit_on_an_escaped_name_is_the_same_secret(fetcher, client):
    fetcher.values["a+b/c"] = SecretValue(name="a+b/c", secret_string="plus")
    client.simulate_get("/cache", query_string="name=a%2Bb%2Fc", headers=AUTH)

    plain = client.simulate_get("/cache", query_string="name=a+b/c", headers=AUTH)
    escaped = client.simulate_get("/cache", query_string="name=a%2Bb%2Fc", headers=AUTH)

    assert (plain.headers["x-cache"], plain.text) == ("HIT", "plus")
    assert (escaped.headers["x-cache"], escaped.text) == ("HIT", "plus")
    assert fetcher.calls == [("a+b/c", None, None)]


def test_kept_bodies_stay_within_their_byte_budget_and_hits_stay_right(fetcher):
    from cachecore_server._app import BODY_BUDGET, _Bodies

    bodies = _Bodies(max_names=10_000)
    values = [
        SecretValue(name=f"big-{i}", secret_string=f"{i:04d}" + "x" * 4092)
        for i in range(1000)
    ]
    for value in values:
        bodies.secret_json(value.name, value)
        bodies.raw(value.name, value)
        assert bodies.size <= BODY_BUDGET

    # Every body is still the right one, whether kept or rendered again.
    for value in values[::97]:
        assert json.loads(bodies.secret_json(value.name, value))["SecretString"] == (
            value.secret_string
        )
        assert bodies.raw(value.name, value) == (
            "text/plain; charset=utf-8",
            (value.secret_string or "").encode(),
        )


def test_a_binary_secret_body_is_the_value_itself_and_costs_no_budget():
    from cachecore_server._app import _Bodies

    bodies = _Bodies(max_names=10)
    blob = SecretValue(name="blob", secret_binary=b"\x00" * 100_000)

    content_type, body = bodies.raw("blob", blob)

    assert (content_type, body is blob.secret_binary, bodies.size) == (
        "application/octet-stream",
        True,
        0,
    )


def test_the_lane_answers_each_name_right_past_the_names_it_remembers(fetcher):
    from cachecore_server._app import _MAX_NAMES

    config = Config(token=TOKEN, max_entries=_MAX_NAMES + 500)
    cache = SecretCache(fetcher, config)
    app = create_app(cache, config)
    names = [f"n{i}" for i in range(_MAX_NAMES + 100)]
    for name in names:
        fetcher.values[name] = SecretValue(name=name, secret_string=f"value of {name}")
        cache.get(name)

    for _ in range(2):
        bodies = []
        for name in names:
            answer = app.lane.answer_request(
                "/cache", "GET", TOKEN, False, f"name={name}"
            )
            assert answer is not None
            bodies.append(answer[1])
        assert bodies == [f"value of {name}".encode() for name in names]
    assert app.lane.answer_request("/cache", "GET", "wrong", False, "name=n1") is None
    assert app.lane.answer_request("/cache", "GET", None, False, "name=n1") is None
    assert app.lane.answer_request("/cache", "GET", "tøken", False, "name=n1") is None
