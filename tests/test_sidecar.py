"""cachecore-server end to end: a real server process, moto behind it, HTTP in front.

The requests are the ones known callers send on the wire (see DESIGN.md, "Known
callers"), byte for byte where it matters.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support import GRANIAN, TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

SERVERS = ["gunicorn", "waitress"]
APP_SERVERS = [*SERVERS, GRANIAN]


def credential(password: str) -> str:
    return json.dumps({"username": "app", "password": password})


@pytest.mark.parametrize("server", APP_SERVERS)
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


@pytest.mark.parametrize("server", APP_SERVERS)
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


@pytest.mark.parametrize("server", APP_SERVERS)
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


@pytest.mark.parametrize("server", APP_SERVERS)
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


@pytest.mark.parametrize("server", APP_SERVERS)
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


def children_of(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("server", "runs", "workers"),
    [(None, "waitress", 0), ("gunicorn", "gunicorn", 1)],
    ids=["no --server", "--server gunicorn"],
)
def test_no_server_option_runs_waitress_in_one_process_gunicorn_forks_a_worker(
    moto_url, start_sidecar, server, runs, workers
):
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_AUTH="none")
    )
    assert sidecar.get("/ping").status == 200  # answered: gunicorn's worker is up
    children = children_of(sidecar.process.pid)
    assert sidecar.stop() == 0

    lines = sidecar.output().splitlines()
    starts = [line for line in lines if " cachecore_server: starting " in line]
    assert len(starts) == 1
    assert f" cachecore_server: starting {runs} with 8 threads: " in starts[0]
    assert len(children) == workers, children
    if runs == "waitress":
        served = f"waitress serving on http://127.0.0.1:{sidecar.port}"
        assert any(line.endswith(served) for line in lines), lines
        assert not any(" gunicorn." in line for line in lines), lines
    else:
        assert any(
            line.endswith(f"Booting worker with pid: {children[0]}") for line in lines
        ), lines


@pytest.mark.parametrize("server", SERVERS)
def test_start_log_hides_the_token(moto_url, start_sidecar, server):
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    )
    assert sidecar.get("/ping").status == 200
    sidecar.stop()

    log = sidecar.output()
    assert "token=<hidden>" in log
    assert TOKEN not in log
    assert os.path.getsize(sidecar.log) > 0


@pytest.mark.parametrize("server", APP_SERVERS)
@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_forwarded_requests_are_refused_by_every_server(
    moto_url, secretsmanager, unique, start_sidecar, server, header
):
    name = unique("forwarded")
    secretsmanager.create_secret(Name=name, SecretString="forwarded-value")
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_AUTH="none")
    )

    answer = sidecar.get(f"/cache?name={name}", headers={header: "203.0.113.9"})

    assert answer.status == 400
    assert b"forwarded-value" not in answer.body
    assert header in answer.text


@pytest.mark.parametrize("server", APP_SERVERS)
def test_longest_secret_id_percent_encoded_gets_an_api_answer(
    moto_url, start_sidecar, server
):
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    )
    encoded = "%C3%A9" * 1024  # 2048 bytes of UTF-8, 6144 characters on the wire

    fits = sidecar.get(
        f"/secretsmanager/get?secretId={encoded}", headers={TOKEN_HEADER: TOKEN}
    )
    too_long = sidecar.get(
        f"/secretsmanager/get?secretId={encoded}a", headers={TOKEN_HEADER: TOKEN}
    )

    assert fits.headers["content-type"] == "application/json"
    assert fits.status in (400, 404)  # whatever Secrets Manager says of the name
    assert too_long.status == 400
    assert "at most 2048 bytes" in json.loads(too_long.body)["message"]


@pytest.mark.parametrize("server", SERVERS)
def test_debug_log_holds_no_secret_value_and_no_token(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    sentinel = "sentinel-secret-in-debug-log-Q4"
    name = unique("debug")
    secretsmanager.create_secret(Name=name, SecretString=sentinel)
    env = sidecar_env(moto_url)
    env["AWS_SESSION_TOKEN"] = TOKEN  # both the AWS session token and the HTTP token
    sidecar = start_sidecar("--log-level", "DEBUG", server=server, env=env)
    auth = {TOKEN_HEADER: TOKEN}

    reads = [
        sidecar.get(f"/cache?name={name}", headers=auth),
        sidecar.get(f"/secretsmanager/get?secretId={name}", headers=auth),
        sidecar.get(f"/cache?name={name}&refresh=1", headers=auth),
        sidecar.get(f"/cache?name={unique('missing')}", headers=auth),
        sidecar.get(f"/cache?name={name}", headers={TOKEN_HEADER: "wrong"}),
    ]
    sidecar.stop()

    assert [r.status for r in reads] == [200, 200, 200, 404, 403]
    log = sidecar.output()
    assert "DEBUG botocore" in log  # botocore's own DEBUG log is on
    assert "withheld" in log  # and its request and response records were withheld
    assert sentinel not in log
    assert TOKEN not in log


def test_port_in_use_stops_start_with_one_line(moto_url, start_sidecar):
    import subprocess

    from support import server_command

    running = start_sidecar(env=sidecar_env(moto_url, CACHECORE_AUTH="none"))
    done = subprocess.run(
        [*server_command(), "--port", str(running.port)],
        env=sidecar_env(moto_url, CACHECORE_AUTH="none"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"cachecore-server: cannot listen on 127.0.0.1:{running.port}: "
        "Address already in use"
    )
    assert running.get("/ping").status == 200


def test_bad_endpoint_variable_stops_start_naming_it(moto_url):
    import subprocess

    from support import server_command

    env = sidecar_env(moto_url, CACHECORE_AUTH="none")
    env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = "not-a-url"
    done = subprocess.run(
        server_command(), env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2
    assert "AWS_ENDPOINT_URL_SECRETS_MANAGER" in done.stderr
    assert "Traceback" not in done.stderr


def raw_exchange(port: int, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("server", SERVERS)
def test_a_transfer_coding_other_than_chunked_is_501_not_an_unbounded_body(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    name = unique("coded")
    secretsmanager.create_secret(Name=name, SecretString="coded-value")
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_AUTH="none")
    )
    # The head alone is refused: the body (a chunk over the 64 KiB limit) need not
    # follow, and a server may close before reading it.
    answer = raw_exchange(
        sidecar.port,
        f"POST /cache?name={name} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
        + b"18000\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 501")
    assert b"coded-value" not in answer


@pytest.mark.parametrize("server", APP_SERVERS)
def test_extra_leading_slashes_never_read_another_secret(
    moto_url, secretsmanager, unique, start_sidecar, server
):
    name = unique("slashes")
    secretsmanager.create_secret(Name=name, SecretString="the right one")
    for decoy in (f"/{name}", f"1/{name}", f"v1/{name}"):
        secretsmanager.create_secret(Name=decoy, SecretString="a decoy")
    sidecar = start_sidecar(
        server=server, env=sidecar_env(moto_url, CACHECORE_AUTH="none")
    )

    for extra in ("/", "//", "///"):
        answer = sidecar.get(f"{extra}/v1/{name}")

        # gunicorn passes the path as sent: no route starts with "//". waitress
        # merges the slashes first: the path is then /v1/<name>.
        assert answer.status in (200, 404), answer.body
        if answer.status == 200:
            assert answer.secret_string == "the right one"
        else:
            assert json.loads(answer.body)["__type"] == "UnknownOperationException"


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_several_ports_serve_the_same_cache(moto_url, secretsmanager, unique, server):
    import subprocess

    from support import free_port, request, server_command, stop, wait_for_port

    name = unique("two-ports")
    secretsmanager.create_secret(Name=name, SecretString="on-both-ports")
    first, second = free_port(), free_port()
    process = subprocess.Popen(
        [*server_command(), "--server", server],
        env=sidecar_env(
            moto_url, CACHECORE_PORT=f"{first},{second}", CACHECORE_TOKEN=TOKEN
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(first, process, "cachecore-server")
        wait_for_port(second, process, "cachecore-server")
        headers = {TOKEN_HEADER: TOKEN}
        by_aws = request(
            first, "GET", f"/secretsmanager/get?secretId={name}", headers=headers
        )
        by_go = request(second, "GET", f"/cache?name={name}", headers=headers)
    finally:
        assert stop(process) == 0

    assert by_aws.secret_string == "on-both-ports"
    assert by_go.text == "on-both-ports"
