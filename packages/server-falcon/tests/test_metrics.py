"""``/metrics`` of the Falcon app against an in-memory fetcher: auth, labels, bounds."""

from __future__ import annotations

import threading

import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cachecore import Config, SecretCache, SecretNotFoundError, SecretValue
from cachecore_server import TOKEN_HEADER, create_app
from cachecore_server._app import route_of

TOKEN = "sentinel-token-metrics-4Zt"
AUTH = {TOKEN_HEADER: TOKEN}
NAME = "prod/metrics-name-Qz9"


class MemoryFetcher:
    def fetch(self, secret_id, *, version_id=None, version_stage=None):
        if secret_id.startswith("missing"):
            raise SecretNotFoundError("no such secret", secret_id=secret_id)
        return SecretValue(name=secret_id, secret_string="v")


def make_client(**settings):
    config = Config(token=TOKEN, **settings)
    return falcon.testing.TestClient(
        create_app(SecretCache(MemoryFetcher(), config), config)
    )


def samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, headers=AUTH):
    answer = client.simulate_get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/cache", "/cache"),
        ("/v1/prod/db", "/v1/{secretId}"),
        ("/v1/", "/v1/{secretId}"),
        ("/secretsmanager/get", "/secretsmanager/get"),
        ("/metrics", "/metrics"),
        ("/prod/db", "unmatched"),
        ("//v1/x", "unmatched"),
    ],
)
def test_requests_are_labelled_by_route_template_never_by_path(path, route):
    assert route_of(path) == route


def test_metrics_take_the_token_header_or_a_bearer_token():
    client = make_client()

    assert client.simulate_get("/metrics").status_code == 401
    assert (
        client.simulate_get("/metrics", headers={TOKEN_HEADER: "x"}).status_code == 403
    )
    wrong_bearer = client.simulate_get(
        "/metrics", headers={"Authorization": "Bearer wrong"}
    )
    basic = client.simulate_get("/metrics", headers={"Authorization": "Basic abc"})
    both_one_wrong = client.simulate_get(
        "/metrics", headers={**AUTH, "Authorization": "Bearer wrong"}
    )
    assert (wrong_bearer.status_code, basic.status_code) == (403, 403)
    assert both_one_wrong.status_code == 403
    assert TOKEN not in wrong_bearer.text
    scrape(client, {"Authorization": f"Bearer {TOKEN}"})
    scrape(client, {"authorization": f"bearer {TOKEN}"})
    scrape(client, AUTH)


def test_a_bearer_token_opens_metrics_only():
    client = make_client()

    answer = client.simulate_get(
        "/cache?name=db", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert answer.status_code == 401


def test_metrics_answer_get_only_and_take_no_parameters():
    client = make_client()

    posted = client.simulate_post("/metrics", headers=AUTH)
    queried = client.simulate_get("/metrics", query_string="name=x", headers=AUTH)

    assert posted.status_code == 405 and posted.headers["allow"] == "GET"
    assert queried.status_code == 400


def test_metrics_count_lookups_requests_and_entries():
    client = make_client()
    client.simulate_get(f"/cache?name={NAME}", headers=AUTH)
    client.simulate_get(f"/v1/{NAME}", headers=AUTH)
    client.simulate_get("/secretsmanager/get?secretId=missing-1", headers=AUTH)

    answer = scrape(client)
    found = samples(answer.text)

    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert found[("cachecore_cache_misses_total", ())] == 2
    assert found[("cachecore_cache_hits_total", ())] == 1
    assert found[("cachecore_cache_entries", ())] == 2
    requests = "cachecore_http_requests_total"
    route = (("method", "GET"), ("route", "/v1/{secretId}"), ("status", "200"))
    assert found[(requests, route)] == 1
    missing = (("method", "GET"), ("route", "/secretsmanager/get"), ("status", "404"))
    assert found[(requests, missing)] == 1
    assert NAME not in answer.text and "missing-1" not in answer.text


def test_every_answer_from_many_threads_is_counted_once():
    client = make_client()
    client.simulate_get(f"/cache?name={NAME}", headers=AUTH)  # warm: then hits

    def ask(times: int) -> None:
        for _ in range(times):
            client.simulate_get(f"/cache?name={NAME}", headers=AUTH)
            client.simulate_get("/cache", headers=AUTH)  # 400: no name

    threads = [threading.Thread(target=ask, args=(150,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    mid = samples(scrape(client).text)  # a scrape while they run loses nothing
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    first, second = samples(scrape(client).text), samples(scrape(client).text)

    requests = "cachecore_http_requests_total"
    hits = (("method", "GET"), ("route", "/cache"), ("status", "200"))
    bad = (("method", "GET"), ("route", "/cache"), ("status", "400"))
    assert 1 <= mid[(requests, hits)] <= first[(requests, hits)]
    assert (first[(requests, hits)], first[(requests, bad)]) == (901, 900)
    assert first[(requests, hits)] == second[(requests, hits)]
    assert first[("cachecore_cache_hits_total", ())] == 900


def test_two_apps_in_one_process_count_apart():
    first, second = make_client(), make_client()
    first.simulate_get(f"/cache?name={NAME}", headers=AUTH)

    assert samples(scrape(first).text)[("cachecore_cache_misses_total", ())] == 1
    assert samples(scrape(second).text)[("cachecore_cache_misses_total", ())] == 0


def test_names_are_labels_only_when_asked_and_only_up_to_the_bound():
    client = make_client(metrics_names=True, max_entries=2)
    for name in ("a", "a", "b", "c", "missing-x"):
        client.simulate_get(f"/cache?name={name}", headers=AUTH)

    found = samples(scrape(client).text)

    named = "cachecore_lookups_by_name_total"
    assert found[(named, (("kind", "secret"), ("name", "a"), ("result", "miss")))] == 1
    assert found[(named, (("kind", "secret"), ("name", "a"), ("result", "hit")))] == 1
    assert found[(named, (("kind", "secret"), ("name", "b"), ("result", "miss")))] == 1
    unnamed = "cachecore_lookups_unnamed_total"
    assert found[(unnamed, (("kind", "secret"), ("result", "miss")))] == 1
    assert found[(unnamed, (("kind", "secret"), ("result", "error")))] == 1
    assert not any(labels and dict(labels).get("name") == "c" for _, labels in found)


@pytest.mark.parametrize("names", ["false", "true"])
def test_hits_are_counted_under_the_method_they_were_asked_with(names):
    client = make_client(metrics_names=names == "true")
    client.simulate_get(f"/cache?name={NAME}", headers=AUTH)  # the miss
    for method in ("GET", "POST", "GET", "GET", "POST"):
        answer = client.simulate_request(method, f"/cache?name={NAME}", headers=AUTH)
        assert answer.headers["x-cache"] == "HIT"

    found = samples(scrape(client).text)

    requests = "cachecore_http_requests_total"
    get = (("method", "GET"), ("route", "/cache"), ("status", "200"))
    post = (("method", "POST"), ("route", "/cache"), ("status", "200"))
    assert (found[(requests, get)], found[(requests, post)]) == (4, 2)
    assert found[("cachecore_cache_hits_total", ())] == 5
    named = (("kind", "secret"), ("name", NAME), ("result", "hit"))
    if names == "true":
        assert found[("cachecore_lookups_by_name_total", named)] == 5
    else:
        assert NAME not in scrape(client).text


def test_refused_requests_make_no_series_of_answers_never_given():
    client = make_client()
    client.simulate_get(f"/cache?name={NAME}", headers=AUTH)  # the value is cached
    refused = [
        client.simulate_request("PUT", f"/cache?name={NAME}"),
        client.simulate_request(
            "DELETE", f"/secretsmanager/get?secretId={NAME}", headers=AUTH
        ),
        client.simulate_get(f"/cache?name={NAME}", headers={TOKEN_HEADER: "wrong"}),
    ]

    text = scrape(client).text

    assert [answer.status_code for answer in refused] == [401, 405, 403]
    series = [
        line
        for line in text.splitlines()
        if line.startswith("cachecore_http_requests_total{") and 'status="200"' in line
    ]
    assert series == [
        'cachecore_http_requests_total{method="GET",route="/cache",status="200"} 1.0'
    ]
