from __future__ import annotations

import json

from cachecore_lambda._gate import Gate


def call(app, path):
    seen = {}

    def start_response(status, headers):
        seen["status"] = status
        seen["headers"] = dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], seen["headers"], body


def test_closed_gate_answers_503_with_retry_after_in_the_routes_dialect():
    gate = Gate()

    status, headers, body = call(gate, "/secretsmanager/get")
    assert status.startswith("503 ")
    assert headers["Retry-After"] == "1"
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(body)["__type"] == "ServiceUnavailableException"

    status, headers, body = call(gate, "/cache")
    assert status.startswith("503 ")
    assert headers["Content-Type"].startswith("text/plain")
    assert body.decode().count("\n") == 1


def test_open_gate_hands_every_request_to_the_app():
    gate = Gate()

    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    gate.open(app)

    assert gate.ready
    assert call(gate, "/cache")[::2] == ("200 OK", b"/cache")
