from __future__ import annotations

import logging

from cachecore import RedactingFilter

TOKEN = "sentinel-token-Rd41"


def record(message, fields=None, name="cachecore._fetchers", level=logging.INFO):
    made = logging.LogRecord(name, level, __file__, 1, message, None, None)
    if fields is not None:
        made.fields = fields
    return made


def test_the_token_is_hidden_in_the_message_and_in_the_fields():
    redactor = RedactingFilter()
    redactor.hide(TOKEN)
    seen = record(f"sent {TOKEN}", {"name": f"x-{TOKEN}", "latency_ms": 1.5})

    assert redactor.filter(seen)
    assert TOKEN not in seen.getMessage()
    assert seen.fields == {"name": "x-(hidden)", "latency_ms": 1.5}


def test_a_field_that_names_a_payload_withholds_the_whole_record():
    redactor = RedactingFilter()
    seen = record("harmless", {"body": '{"SecretString": "v"}'})

    assert redactor.filter(seen)
    assert seen.getMessage() == (
        "(withheld: this record may hold a secret value or a token)"
    )
    assert seen.fields == {}


def test_records_without_fields_are_unchanged():
    redactor = RedactingFilter()
    seen = record("GetSecretValue prod/db ok in 0.010s")

    assert redactor.filter(seen)
    assert seen.getMessage() == "GetSecretValue prod/db ok in 0.010s"
