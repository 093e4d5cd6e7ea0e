"""The log of a real cachecore-server, in both formats and on both servers: one
start-up line with the settings, one line per call to AWS with its name, outcome
and latency, gunicorn's lines in the same format, and in JSON every line one
object. A sentinel value and the token appear nowhere (``test_sentinel`` reads
every route with botocore's DEBUG log on, in both formats too).
"""

from __future__ import annotations

import json
import re

import pytest
from support import TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}
VALUE = "sentinel-value-logs-Jt52-do-not-log"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def exercise(sidecar, name, missing):
    answers = [
        sidecar.get(f"/secretsmanager/get?secretId={name}", headers=AUTH),
        sidecar.get(f"/secretsmanager/get?secretId={name}", headers=AUTH),
        sidecar.get(f"/secretsmanager/get?secretId={missing}", headers=AUTH),
    ]
    assert [a.status for a in answers] == [200, 200, 404]
    sidecar.stop()
    return sidecar.output()


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_json_log_lines_are_objects_with_the_fields_of_each_fetch(
    server, moto_url, secretsmanager, unique, start_sidecar
):
    name, missing = unique("json-log"), unique("json-log-missing")
    secretsmanager.create_secret(Name=name, SecretString=VALUE)
    env = sidecar_env(
        moto_url,
        CACHECORE_TOKEN=TOKEN,
        CACHECORE_LOG_FORMAT="json",
        AWS_MAX_ATTEMPTS="1",
    )
    sidecar = start_sidecar("--log-level", "DEBUG", server=server, env=env)

    log = exercise(sidecar, name, missing)

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert ISO_UTC.fullmatch(line["time"]), line
    starts = [line for line in lines if line.get("event") == "start"]
    assert len(starts) == 1
    assert "token=<hidden>" in starts[0]["message"]
    assert starts[0]["server"] == server
    fetches = [line for line in lines if line["logger"] == "cachecore._fetchers"]
    assert [(f["name"], f["outcome"]) for f in fetches] == [
        (name, "ok"),
        (missing, "error"),
    ]
    assert fetches[1]["error"] == "ResourceNotFoundException"
    assert all(f["operation"] == "GetSecretValue" for f in fetches)
    assert all(f["level"] == "INFO" and f["latency_ms"] > 0 for f in fetches)
    assert any(line["logger"].startswith("botocore") for line in lines)
    if server == "gunicorn":
        assert any(line["logger"] == "gunicorn.error" for line in lines)
    assert VALUE not in log
    assert TOKEN not in log


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_text_log_has_one_start_line_and_a_line_per_fetch(
    server, moto_url, secretsmanager, unique, start_sidecar
):
    name, missing = unique("text-log"), unique("text-log-missing")
    secretsmanager.create_secret(Name=name, SecretString=VALUE)
    env = sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN, AWS_MAX_ATTEMPTS="1")
    sidecar = start_sidecar(server=server, env=env)

    log = exercise(sidecar, name, missing)

    lines = log.splitlines()
    starts = [line for line in lines if "cachecore_server: starting " in line]
    assert len(starts) == 1 and "token=<hidden>" in starts[0]
    assert f"cachecore_server: starting {server} with " in starts[0]
    assert not any(line.lstrip().startswith("{") for line in lines)
    fetched = [line for line in lines if "INFO cachecore._fetchers:" in line]
    assert len(fetched) == 2
    assert re.search(
        rf"GetSecretValue {re.escape(name)} ok in \d+\.\d{{3}}s", fetched[0]
    )
    assert re.search(
        rf"GetSecretValue {re.escape(missing)} failed after \d+\.\d{{3}}s: "
        "ResourceNotFoundException",
        fetched[1],
    )
    if server == "gunicorn":
        # gunicorn's own lines take the same format.
        assert any(" INFO gunicorn.error: Booting worker" in line for line in lines)
    else:
        assert any(
            " INFO cachecore_server._serve: waitress serving on http://" in line
            for line in lines
        )
    assert VALUE not in log
    assert TOKEN not in log
