"""A sentinel secret value and a sentinel token, read every way with DEBUG logging on
(botocore's too), must appear in no log line, no error body and no file the server
wrote. Only the success answers may hold the value, and no answer the token.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from support import sidecar_env

from cachecore_server import TOKEN_HEADER

VALUE = "sentinel-value-Mx81-do-not-log"
TOKEN = "sentinel-token-Lq20-do-not-log"


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_sentinels_reach_no_log_no_error_body_and_no_file(
    log_format,
    server,
    moto_url,
    secretsmanager,
    ssm,
    unique,
    start_sidecar,
    tmp_path,
    monkeypatch,
):
    name = unique("sentinel")
    secretsmanager.create_secret(Name=name, SecretString=VALUE)
    binary = unique("sentinel-binary")
    secretsmanager.create_secret(Name=binary, SecretBinary=VALUE.encode())
    parameter = "/" + unique("sentinel-parameter")
    ssm.put_parameter(Name=parameter, Type="SecureString", Value=VALUE)

    home = tmp_path / "home"
    home.mkdir()
    env = sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        AWS_ENDPOINT_URL_SSM=moto_url,
        AWS_SESSION_TOKEN=TOKEN,  # signed into every upstream request too
        CACHECORE_LOG_FORMAT=log_format,
    )
    monkeypatch.chdir(home)
    sidecar = start_sidecar("--log-level", "DEBUG", server=server, env=env)
    good = {TOKEN_HEADER: TOKEN}

    successes = [
        sidecar.get(f"/cache?name={name}", headers=good),
        sidecar.post(f"/cache?name={name}&refresh=1", headers=good, body=b"[]"),
        sidecar.get(f"/secretsmanager/get?secretId={name}", headers=good),
        sidecar.get(f"/v1/{name}?versionStage=AWSCURRENT", headers=good),
        sidecar.get(f"/cache?name={binary}", headers=good),
        sidecar.get(
            f"/systemsmanager/parameters/get?name={parameter}&withDecryption=true",
            headers=good,
        ),
    ]
    failures = [
        sidecar.get(f"/cache?name={name}"),
        sidecar.get(f"/cache?name={name}", headers={TOKEN_HEADER: VALUE}),
        sidecar.get(f"/secretsmanager/get?secretId={name}", headers={TOKEN_HEADER: ""}),
        sidecar.get(f"/cache?name={name}&{VALUE}=1", headers=good),
        sidecar.get(f"/cache?name={name}&{TOKEN}=1", headers=good),
        sidecar.get(f"/cache?name={name}&refresh={TOKEN}", headers=good),
        sidecar.get(f"/cache?name={name}&refresh={VALUE}", headers=good),
        sidecar.get(f"/secretsmanager/get?secretId={quote(TOKEN)}", headers=good),
        sidecar.get(f"/systemsmanager/parameters/get?name=/{TOKEN}", headers=good),
        sidecar.get(
            f"/systemsmanager/parameters/get?name={parameter}&version={TOKEN}",
            headers=good,
        ),
        sidecar.get(
            f"/secretsmanager/get?secretId={name}",
            headers={**good, "X-Forwarded-For": "192.0.2.1"},
        ),
        sidecar.post(f"/secretsmanager/get?secretId={name}", headers=good),
        sidecar.get(f"/v1/{name}?versionId=x", headers=good),
    ]
    sidecar.stop()

    assert [a.status for a in successes] == [200] * len(successes)
    assert VALUE.encode() in successes[0].body
    assert base64.b64encode(VALUE.encode()) not in successes[4].body  # raw bytes
    for answer in successes:
        assert TOKEN.encode() not in answer.body
    for answer in failures:
        assert answer.status >= 400
        assert VALUE.encode() not in answer.body, answer.body
        assert TOKEN.encode() not in answer.body, answer.body
        for value in answer.headers.values():
            assert VALUE not in value and TOKEN not in value
    log = sidecar.output()
    if log_format == "json":
        lines = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert any(
            line["level"] == "DEBUG" and line["logger"].startswith("botocore")
            for line in lines
        )
    else:
        assert "DEBUG botocore" in log
    assert VALUE not in log
    assert TOKEN not in log
    for path in files_under(home):
        content = path.read_bytes()
        assert VALUE.encode() not in content, path
        assert TOKEN.encode() not in content, path
