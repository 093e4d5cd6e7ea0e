"""cachecore-server end to end: a real server process, moto behind it, HTTP in front.

The requests are the ones known callers send on the wire (see DESIGN.md, "Known
callers"), byte for byte where it matters.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from support import TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

SERVERS = ["gunicorn", "waitress"]


def credential(password: str) -> str:
    return json.dumps({"username": "app", "password": password})


@pytest.mark.parametrize("server", SERVERS)
def test_legacy_php_client_reads_cached_value_until_it_asks_for_refresh(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    name = unique("legacy+app")  # the PHP client inserts the name unencoded
    secretsmanager.create_secret(Name=name, SecretString=credential("first"))
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_AUTH="none")
    )

    def php_request(refresh: str):
        return sidecar.post(
            f"/cache?name={name}&refresh={refresh}",
            headers={"Content-Type": "application/json"},
            body=b"[]",
        )

    first = php_request("0")
    secretsmanager.put_secret_value(SecretId=name, SecretString=credential("second"))
    cached = php_request("0")
    refreshed = php_request("1")
    after = php_request("0")

    assert first.status == 200
    assert first.text == credential("first")
    assert json.loads(first.body)["password"] == "first"
    assert cached.text == credential("first")
    assert cached.headers["x-cache"] == "HIT"
    assert json.loads(refreshed.body)["password"] == "second"
    assert refreshed.headers["x-cache"] == "MISS"
    assert json.loads(after.body)["password"] == "second"


@pytest.mark.parametrize("server", SERVERS)
def test_aws_dialect_returns_get_secret_value_json_and_sees_changes_after_ttl(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    name = unique("db")
    created = secretsmanager.create_secret(Name=name, SecretString=credential("one"))
    sidecar = start_sidecar(
        server=server,
        env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN, CACHECORE_TTL="2"),
    )
    target = f"/secretsmanager/get?secretId={name}"
    auth = {TOKEN_HEADER: TOKEN}

    first = sidecar.get(target, headers=auth)
    secretsmanager.put_secret_value(SecretId=name, SecretString=credential("two"))
    seen = [sidecar.get(target, headers=auth)]
    deadline = time.monotonic() + 20
    while json.loads(seen[-1].secret_string)["password"] != "two":
        assert time.monotonic() < deadline, "the new value never arrived"
        time.sleep(0.1)
        seen.append(sidecar.get(target, headers=auth))

    body = json.loads(first.body)
    assert first.status == 200
    assert first.headers["content-type"] == "application/json"
    assert body["ARN"] == created["ARN"]
    assert body["Name"] == name
    assert body["VersionId"] == created["VersionId"]
    assert body["VersionStages"] == ["AWSCURRENT"]
    assert json.loads(body["SecretString"])["password"] == "one"
    assert float(body["CreatedDate"]) > 0
    # Within the TTL the cache answers the old value; the new one arrives by a fetch.
    for answer in seen[:-1]:
        assert answer.headers["x-cache"] == "HIT"
        assert json.loads(answer.secret_string)["password"] == "one"
    assert seen[-1].headers["x-cache"] == "MISS"


@pytest.mark.parametrize("server", SERVERS)
def test_missing_secret_is_404_and_the_next_good_request_answers_at_once(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    name = unique("present")
    secretsmanager.create_secret(Name=name, SecretString="here")
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    )
    auth = {TOKEN_HEADER: TOKEN}

    missing_aws = sidecar.get(
        f"/secretsmanager/get?secretId={unique('absent')}", headers=auth
    )
    missing_legacy = sidecar.get(f"/cache?name={unique('absent')}", headers=auth)
    again = sidecar.get(
        f"/secretsmanager/get?secretId={unique('absent')}", headers=auth
    )
    good = sidecar.get(f"/cache?name={name}", headers=auth, timeout=5)

    assert missing_aws.status == 404
    assert json.loads(missing_aws.body)["__type"] == "ResourceNotFoundException"
    assert missing_legacy.status == 404
    assert missing_legacy.headers["content-type"] == "text/plain; charset=utf-8"
    assert again.status == 404
    assert (good.status, good.text) == (200, "here")


@pytest.mark.parametrize("server", SERVERS)
def test_missing_or_wrong_token_is_refused_without_the_secret(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    name = unique("guarded")
    secretsmanager.create_secret(Name=name, SecretString=credential("guarded-value"))
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    )
    sidecar.get(f"/cache?name={name}", headers={TOKEN_HEADER: TOKEN})  # now cached

    answers = {
        (route, label): sidecar.get(target, headers=headers)
        for route, target in (
            ("legacy", f"/cache?name={name}"),
            ("aws", f"/secretsmanager/get?secretId={name}"),
        )
        for label, headers in (
            ("none", {}),
            ("wrong", {TOKEN_HEADER: "not-the-token"}),
        )
    }

    for (route, label), answer in answers.items():
        assert answer.status == (401 if label == "none" else 403), (route, label)
        assert b"guarded-value" not in answer.body
        assert TOKEN.encode() not in answer.body
        assert answer.headers["cache-control"] == "no-store"
    assert sidecar.get("/ping").text == "healthy"


def test_generic_aws_endpoint_variable_is_honoured(
    moto_url, secretsmanager, unique, start_sidecar
):
    name = unique("generic-endpoint")
    secretsmanager.create_secret(Name=name, SecretString="via AWS_ENDPOINT_URL")
    env = sidecar_env(moto_url, CACHECORE_AUTH="none")
    del env["AWS_ENDPOINT_URL_SECRETS_MANAGER"]
    env["AWS_ENDPOINT_URL"] = moto_url
    sidecar = start_sidecar(env=env)

    assert sidecar.get(f"/cache?name={name}").text == "via AWS_ENDPOINT_URL"


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_stops_the_server_with_exit_0(moto_url, start_sidecar, server):
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_AUTH="none")
    )
    assert sidecar.get("/ping").status == 200

    assert sidecar.stop() == 0


def test_bad_setting_stops_start_before_binding(moto_url):
    import subprocess

    from support import server_command

    env = sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN, CACHECORE_TTL="forever")
    done = subprocess.run(
        server_command(), env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2
    assert "CACHECORE_TTL must be an integer from 0 to 86400, got 'forever'" in (
        done.stderr
    )
    assert TOKEN not in done.stderr + done.stdout


def test_start_log_hides_the_token(moto_url, start_sidecar):
    sidecar = start_sidecar(env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN))
    assert sidecar.get("/ping").status == 200
    sidecar.stop()

    log = sidecar.output()
    assert "token=<hidden>" in log
    assert TOKEN not in log
    assert os.path.getsize(sidecar.log) > 0
