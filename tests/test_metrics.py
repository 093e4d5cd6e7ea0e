"""``/metrics`` of a real cachecore-server (gunicorn and waitress) after a known
sequence of requests, with a fault proxy between the sidecar and moto.

The sidecar runs with AWS_MAX_ATTEMPTS=1, so each fetch is one call at the proxy,
and with no minimum interval between forced refreshes, so a refresh that the
proxy throttles is answered stale at once.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import TOKEN, env_through

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}
GET = "GetSecretValue"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def counted_env(proxy, **settings):
    """Each fetch is one call at the proxy, a refresh is never held back by a
    minimum interval, and Parameter Store is the proxy's moto, reached directly."""
    return env_through(
        proxy,
        AWS_MAX_ATTEMPTS="1",
        CACHECORE_REFRESH_MIN_INTERVAL="0",
        AWS_ENDPOINT_URL_SSM=proxy.upstream_url,
        **settings,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(route: str, method: str, status: int) -> tuple[str, tuple]:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return ("cachecore_http_requests_total", labels)


def run_known_sequence(sidecar, proxy, names):
    """The requests whose counts the tests expect; returns the X-Cache of each."""
    found, missing, failing, parameter = names
    states = []

    def state(answer, status):
        assert answer.status == status, (answer.status, answer.text)
        states.append(answer.headers.get("x-cache"))

    state(sidecar.get(f"/secretsmanager/get?secretId={found}", headers=AUTH), 200)
    state(sidecar.get(f"/secretsmanager/get?secretId={found}", headers=AUTH), 200)
    state(sidecar.get(f"/cache?name={found}", headers=AUTH), 200)
    state(sidecar.get(f"/v1/{found}", headers=AUTH), 200)
    proxy.fail(GET, "throttle", times=1)
    refresh = f"/secretsmanager/get?secretId={found}&refreshNow=true"
    state(sidecar.get(refresh, headers=AUTH), 200)
    state(sidecar.get(f"/secretsmanager/get?secretId={missing}", headers=AUTH), 404)
    proxy.fail(GET, "error500", times=1)
    state(sidecar.get(f"/secretsmanager/get?secretId={failing}", headers=AUTH), 502)
    state(
        sidecar.get(f"/systemsmanager/parameters/get?name={parameter}", headers=AUTH),
        200,
    )
    state(sidecar.get(f"/cache?name={found}"), 401)
    state(sidecar.get(f"/cache?name={found}", headers={TOKEN_HEADER: "wrong"}), 403)
    state(sidecar.post(f"/secretsmanager/get?secretId={found}", headers=AUTH), 405)
    state(sidecar.get(f"/no/such/{found}", headers=AUTH), 404)
    state(sidecar.get("/metrics"), 401)
    return states


def make_names(unique, secretsmanager, ssm):
    found = unique("metrics-found")
    secretsmanager.create_secret(Name=found, SecretString="metrics-value")
    failing = unique("metrics-failing")
    secretsmanager.create_secret(Name=failing, SecretString="never-read")
    parameter = "/" + unique("metrics-parameter")
    ssm.put_parameter(Name=parameter, Type="String", Value="parameter-value")
    return found, unique("metrics-missing"), failing, parameter


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_metrics_count_exactly_what_a_known_sequence_of_requests_did(
    server, ssm, secretsmanager, unique, start_sidecar, proxy
):
    names = make_names(unique, secretsmanager, ssm)
    sidecar = start_sidecar(server=server, env=counted_env(proxy))

    states = run_known_sequence(sidecar, proxy, names)
    first = sidecar.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    second = sidecar.get("/metrics", headers=AUTH)

    assert states[:8] == ["MISS", "HIT", "HIT", "HIT", "STALE", None, None, "MISS"]
    assert proxy.calls(GET) == 4
    assert (first.status, second.status) == (200, 200)
    assert first.headers["content-type"] == CONTENT_TYPE
    before, after = samples(first.text), samples(second.text)
    assert before[("cachecore_cache_hits_total", ())] == 3
    # The refresh that was answered stale needed a call, as did the two errors.
    assert before[("cachecore_cache_misses_total", ())] == 5
    assert before[("cachecore_cache_stale_total", ())] == 1
    assert before[("cachecore_cache_coalesced_total", ())] == 0
    # The failures are remembered for their backoff: four keys in all.
    assert before[("cachecore_cache_entries", ())] == 4
    calls = "cachecore_upstream_calls_total"
    assert before[(calls, (("operation", GET),))] == 4
    assert before[(calls, (("operation", "GetParameter"),))] == 1
    errors = "cachecore_upstream_errors_total"
    for code in ("ThrottlingException", "ResourceNotFoundException"):
        assert before[(errors, (("error", code), ("operation", GET)))] == 1
    assert (
        before[(errors, (("error", "InternalServiceError"), ("operation", GET)))] == 1
    )
    assert not any(
        name == errors and dict(labels)["operation"] == "GetParameter"
        for name, labels in before
    )
    histogram = "cachecore_upstream_duration_seconds"
    assert before[(f"{histogram}_count", (("operation", GET),))] == 4
    assert before[(f"{histogram}_bucket", (("le", "+Inf"), ("operation", GET)))] == 4
    assert before[(f"{histogram}_sum", (("operation", GET),))] > 0
    assert before[requests("/secretsmanager/get", "GET", 200)] == 3
    assert before[requests("/cache", "GET", 200)] == 1
    assert before[requests("/v1/{secretId}", "GET", 200)] == 1
    assert before[requests("/secretsmanager/get", "GET", 404)] == 1
    assert before[requests("/secretsmanager/get", "GET", 502)] == 1
    assert before[requests("/systemsmanager/parameters/get", "GET", 200)] == 1
    assert before[requests("/cache", "GET", 401)] == 1
    assert before[requests("/cache", "GET", 403)] == 1
    assert before[requests("/secretsmanager/get", "POST", 405)] == 1
    assert before[requests("unmatched", "GET", 404)] == 1
    assert before[requests("/metrics", "GET", 401)] == 1
    assert requests("/metrics", "GET", 200) not in before
    assert after[requests("/metrics", "GET", 200)] == 1
    for name in names:
        assert name not in first.text and name.lstrip("/") not in first.text


def test_metrics_name_secrets_only_with_metrics_names_on(
    ssm, secretsmanager, unique, start_sidecar, proxy
):
    names = make_names(unique, secretsmanager, ssm)
    found, missing, failing, parameter = names
    sidecar = start_sidecar(
        server="waitress",
        env=counted_env(proxy, CACHECORE_METRICS_NAMES="true"),
    )

    run_known_sequence(sidecar, proxy, names)
    scraped = samples(sidecar.get("/metrics", headers=AUTH).text)

    def named(kind, name, result):
        labels = (("kind", kind), ("name", name), ("result", result))
        return scraped.get(("cachecore_lookups_by_name_total", labels))

    assert named("secret", found, "miss") == 1
    assert named("secret", found, "hit") == 3
    assert named("secret", found, "stale") == 1
    assert named("secret", missing, "error") == 1
    assert named("secret", failing, "error") == 1
    assert named("parameter", parameter, "miss") == 1
    # A request refused before its lookup (405, 401, 403) counts no lookup.
    assert (
        sum(
            value
            for (name, labels), value in scraped.items()
            if name == "cachecore_lookups_by_name_total"
            and dict(labels)["name"] == found
        )
        == 5
    )


def test_metrics_need_the_token_and_take_a_bearer(start_sidecar, proxy):
    sidecar = start_sidecar(env=counted_env(proxy))

    missing = sidecar.get("/metrics")
    wrong = sidecar.get("/metrics", headers={"Authorization": "Bearer wrong"})
    bearer = sidecar.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    ping = sidecar.get("/ping")

    assert (missing.status, wrong.status, bearer.status) == (401, 403, 200)
    assert ping.status == 200
    assert TOKEN not in wrong.text and TOKEN not in bearer.text
    families = {f.name for f in text_string_to_metric_families(bearer.text)}
    assert {
        "cachecore_http_requests",
        "cachecore_upstream_calls",
        "cachecore_upstream_errors",
        "cachecore_upstream_duration_seconds",
        "cachecore_cache_hits",
        "cachecore_cache_misses",
        "cachecore_cache_stale",
        "cachecore_cache_entries",
    } <= families
