"""The log formats of the entry points: one JSON object a line, or text."""

from __future__ import annotations

import json
import logging

from cachecore_server._logs import JsonFormatter

TOKEN = "sentinel-token-logs-9Wd"


def make_record(message, *args, fields=None, exc_info=None):
    record = logging.LogRecord(
        "cachecore._fetchers", logging.INFO, __file__, 1, message, args, exc_info
    )
    if fields is not None:
        record.fields = fields
    return record


def test_a_json_line_is_one_object_with_time_level_logger_message_and_fields():
    line = JsonFormatter().format(
        make_record(
            "GetSecretValue %s ok",
            "a\nb\u2028c",
            fields={"name": "a", "latency_ms": 1.5, "message": "not this"},
        )
    )

    document = json.loads(line)
    assert "\n" not in line and "\u2028" not in line
    assert document["message"] == "GetSecretValue a\nb\u2028c ok"
    assert document["level"] == "INFO"
    assert document["logger"] == "cachecore._fetchers"
    assert document["time"].endswith("Z") and "T" in document["time"]
    assert (document["name"], document["latency_ms"]) == ("a", 1.5)


def test_a_traceback_stays_on_the_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        record = make_record("failed", exc_info=(type(exc), exc, exc.__traceback__))

    line = JsonFormatter().format(record)

    assert line.count("\n") == 0
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_a_hidden_token_in_a_field_of_any_type_is_replaced_on_the_json_line():
    from cachecore._redact import RedactingFilter

    redact = RedactingFilter()
    redact.hide(TOKEN)
    record = make_record(
        "request refused",
        fields={"headers": {"X-Token": TOKEN}, "tried": [TOKEN], "status": 403},
    )

    assert redact.filter(record)
    document = json.loads(JsonFormatter().format(record))

    assert TOKEN not in json.dumps(document)
    assert document["headers"] == "{'X-Token': '(hidden)'}"
    assert document["tried"] == "['(hidden)']"
    assert document["status"] == 403
