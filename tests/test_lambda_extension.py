"""The real extension process, driven through its life by the Extensions API emulator.

Each test starts ``python -m cachecore_lambda`` with ``AWS_LAMBDA_RUNTIME_API``
pointing at an emulator of its own, in front of moto (through the fault proxy
where a test needs to count or slow the calls to Secrets Manager). With
``CACHECORE_TEST_EXTENSION`` set to a layer's ``extensions/cachecore``, the tests
run that instead: the Python layer's launcher, or the executable layer's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from lambda_emulator import ExtensionsAPI
from support import HOST, Answer, free_port, request, sidecar_env

SESSION_TOKEN = "lambda-session-token-Qx7"
EXTENSION_COMMAND = (
    [os.environ["CACHECORE_TEST_EXTENSION"]]
    if os.environ.get("CACHECORE_TEST_EXTENSION")
    else [sys.executable, "-m", "cachecore_lambda"]
)
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
AUTH = {TOKEN_HEADER: SESSION_TOKEN}


@dataclass
class Extension:
    api: ExtensionsAPI
    process: subprocess.Popen[bytes]
    ports: tuple[int, int]
    log: Path

    @property
    def port(self) -> int:
        return self.ports[0]

    def get(self, target: str, port: int | None = None, **kwargs: object) -> Answer:
        return request(port or self.port, "GET", target, headers=AUTH, **kwargs)  # type: ignore[arg-type]

    def secret(self, name: str, port: int | None = None) -> Answer:
        return self.get(f"/secretsmanager/get?secretId={name}", port)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self, timeout: float = 30.0) -> None:
        """Registered, built and parked in event/next: init is over."""
        self.api.wait_registered(timeout)
        self.api.wait_waiting(timeout)


def lambda_env(endpoint: str, api: ExtensionsAPI, ports: tuple[int, int], **extra: str):
    env = sidecar_env(endpoint)
    env.update(
        AWS_LAMBDA_RUNTIME_API=api.address,
        AWS_SESSION_TOKEN=SESSION_TOKEN,
        CACHECORE_PORT=f"{ports[0]},{ports[1]}",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def start_extension(
    moto_url: str, tmp_path: Path
) -> Iterator[Callable[..., Extension]]:
    started: list[Extension] = []
    apis: list[ExtensionsAPI] = []

    def start(
        endpoint: str | None = None,
        *,
        api: ExtensionsAPI | None = None,
        **extra: str,
    ) -> Extension:
        if api is None:
            api = ExtensionsAPI().start()
            apis.append(api)
        ports = (free_port(), free_port())
        log = tmp_path / f"extension-{ports[0]}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                EXTENSION_COMMAND,
                env=lambda_env(endpoint or moto_url, api, ports, **extra),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        extension = Extension(api, process, ports, log)
        started.append(extension)
        return extension

    yield start
    for extension in started:
        if extension.process.poll() is None:
            extension.process.send_signal(signal.SIGCONT)
            extension.process.terminate()
            try:
                extension.process.wait(10)
            except subprocess.TimeoutExpired:
                extension.process.kill()
                extension.process.wait()
    for api in apis:
        api.close()


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url) as running:
        yield running


def connect_when_open(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the extension exited during init"
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except ConnectionRefusedError:
            time.sleep(0.005)
    pytest.fail(f"port {port} never opened")


def test_registers_as_cachecore_for_invoke_and_shutdown(start_extension):
    extension = start_extension()
    extension.ready()

    registration = extension.api.registrations[0]
    assert registration.name == "cachecore"
    assert json.loads(registration.body) == {"events": ["INVOKE", "SHUTDOWN"]}
    assert registration.headers["Lambda-Extension-Name"] == "cachecore"
    polls = [r for r in extension.api.requests if r.path.endswith("/event/next")]
    assert polls
    assert {r.headers["Lambda-Extension-Identifier"] for r in polls} == {
        registration.identifier
    }


def test_port_answers_before_register_returns_and_never_refuses(
    start_extension, secretsmanager, unique
):
    name = unique("during-init")
    secretsmanager.create_secret(Name=name, SecretString="init-value")
    api = ExtensionsAPI().start()
    try:
        api.hold_register()
        extension = start_extension(api=api)
        connect_when_open(extension.port, extension.process)
        api.wait_request("/2020-01-01/extension/register", 30)

        answers = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = extension.secret(name)  # a refused connection raises here
            answers.append(answer)
            if answer.status == 200:
                break
            time.sleep(0.02)
        unanswered = not api.registrations
        api.release_register()
        extension.ready()
    finally:
        api.close()

    assert unanswered, "register was answered before the port was tried"
    assert answers[-1].status == 200
    assert answers[-1].secret_string == "init-value"
    for answer in answers[:-1]:
        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        assert json.loads(answer.body)["__type"] == "ServiceUnavailableException"


def test_secrets_read_during_invoke_come_from_moto_through_the_cache(
    start_extension, proxy, secretsmanager, unique
):
    name = unique("invoke")
    secretsmanager.create_secret(Name=name, SecretString="from-moto")
    extension = start_extension(proxy.url)
    extension.ready()
    extension.api.invoke()

    first = extension.secret(name)
    second = extension.secret(name, port=extension.ports[1])
    legacy = extension.get(f"/cache?name={name}")

    assert (first.status, first.secret_string) == (200, "from-moto")
    assert first.headers["x-cache"] == "MISS"
    assert (second.secret_string, second.headers["x-cache"]) == ("from-moto", "HIT")
    assert legacy.text == "from-moto"
    assert proxy.calls("GetSecretValue") == 1


def test_unauthenticated_request_is_refused_inside_lambda_too(start_extension):
    extension = start_extension()
    extension.ready()

    answer = request(extension.port, "GET", "/secretsmanager/get?secretId=x")

    assert answer.status == 401


def test_prefetch_at_init_reads_the_listed_secrets_in_one_batch(
    start_extension, proxy, secretsmanager, unique
):
    names = [unique(f"prefetch-{i}") for i in range(3)]
    for name in names:
        secretsmanager.create_secret(Name=name, SecretString=f"value-of-{name}")
    extension = start_extension(proxy.url, CACHECORE_PREFETCH=",".join(names))
    extension.ready()

    answers = [extension.secret(name) for name in names]

    assert [a.secret_string for a in answers] == [f"value-of-{n}" for n in names]
    assert {a.headers["x-cache"] for a in answers} == {"HIT"}
    assert proxy.calls("BatchGetSecretValue") == 1
    assert proxy.calls("GetSecretValue") == 0


@pytest.mark.parametrize("reason", ["spindown", "timeout", "failure"])
def test_shutdown_for_each_reason_ends_with_exit_0(start_extension, reason):
    extension = start_extension()
    extension.ready()
    extension.api.invoke()
    extension.api.wait_waiting(10)

    extension.api.shutdown(reason)

    assert extension.process.wait(timeout=10) == 0
    assert f"SHUTDOWN ({reason})" in extension.output()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, extension.port), timeout=1)


def test_shutdown_with_five_slow_requests_in_flight_exits_0_inside_2s(
    start_extension, proxy, secretsmanager, unique
):
    names = [unique(f"slow-{i}") for i in range(5)]
    for name in names:
        secretsmanager.create_secret(Name=name, SecretString=f"slow-value-{name}")
    extension = start_extension(proxy.url)
    extension.ready()
    extension.api.invoke()
    proxy.delay("GetSecretValue", 0.8)
    answers: dict[str, Answer] = {}

    def read(name: str) -> None:
        answers[name] = extension.secret(name)

    readers = [threading.Thread(target=read, args=(n,)) for n in names]
    for reader in readers:
        reader.start()
    proxy.wait_calls("GetSecretValue", 5, timeout=10)
    assert proxy.calls("GetSecretValue") == 5, "the requests never reached upstream"

    extension.api.shutdown("spindown")  # deadline: 2 s from now
    code = extension.process.wait(timeout=2.0)
    for reader in readers:
        reader.join(5)

    assert code == 0
    assert {n: a.status for n, a in answers.items()} == dict.fromkeys(names, 200)
    assert [answers[n].secret_string for n in names] == [
        f"slow-value-{n}" for n in names
    ]


def test_sigterm_stops_the_extension_cleanly(start_extension):
    extension = start_extension()
    extension.ready()

    extension.process.send_signal(signal.SIGTERM)

    assert extension.process.wait(timeout=5) == 0
    assert "SIGTERM: stopping" in extension.output()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"SECRETS_MANAGER_TTL": "soon"}, "SECRETS_MANAGER_TTL must be an integer"),
        ({"CACHE_EXTENSION_TTL": "5 minutes"}, "CACHE_EXTENSION_TTL must be a Go"),
        ({"CACHECORE_PORT": "0"}, "CACHECORE_PORT must be a port"),
        ({"AWS_SESSION_TOKEN": ""}, "no token is set"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, "no AWS region is set"),
    ],
)
def test_bad_config_reaches_init_error_with_a_message_naming_it(
    start_extension, settings, named
):
    extension = start_extension(**settings)

    report = extension.api.wait_init_error(30)
    code = extension.process.wait(timeout=10)

    assert code == 1
    assert report.error_type == "Extension.ConfigInvalid"
    assert named in report.json["errorMessage"]
    assert named in extension.output()
    assert extension.api.extension_state(report.identifier) == "InitError"


def test_port_in_use_reaches_init_error(start_extension):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        extension = start_extension(CACHECORE_PORT=str(port))

        report = extension.api.wait_init_error(30)
        assert extension.process.wait(timeout=10) == 1

    assert report.error_type == "Extension.PortUnavailable"
    assert f"{port}" in report.json["errorMessage"]


def test_a_pause_longer_than_the_ttl_then_a_read_gets_the_new_value(
    start_extension, proxy, secretsmanager, unique
):
    name = unique("frozen")
    secretsmanager.create_secret(Name=name, SecretString="before-freeze")
    extension = start_extension(proxy.url, CACHECORE_TTL="1", CACHECORE_TTL_JITTER="0")
    extension.ready()
    extension.api.invoke()
    assert extension.secret(name).secret_string == "before-freeze"
    secretsmanager.put_secret_value(SecretId=name, SecretString="after-thaw")

    extension.process.send_signal(signal.SIGSTOP)
    time.sleep(1.5)
    # The pooled connection to Secrets Manager dies while the sandbox is frozen.
    proxy.reset("GetSecretValue", times=1)
    proxy.reset_counts()
    extension.process.send_signal(signal.SIGCONT)
    extension.api.invoke()
    answer = extension.secret(name)

    assert (answer.status, answer.secret_string) == (200, "after-thaw")
    assert answer.headers["x-cache"] == "MISS"
    assert proxy.calls("GetSecretValue") == 2  # the reset one and one retry


def test_settings_of_the_earlier_extensions_are_honoured(
    start_extension, proxy, secretsmanager, unique
):
    name = unique("aws-names")
    secretsmanager.create_secret(Name=name, SecretString="v1")
    extension = start_extension(
        proxy.url,
        SECRETS_MANAGER_TTL="0",
        CACHE_EXTENSION_TTL="1h",
    )
    extension.ready()

    extension.secret(name)
    extension.secret(name)

    # SECRETS_MANAGER_TTL=0 wins over the Go TTL: nothing is cached.
    assert proxy.calls("GetSecretValue") == 2
    assert (
        "SECRETS_MANAGER_TTL is set and wins; ignoring CACHE_EXTENSION_TTL"
        in extension.output()
    )


def test_no_secret_value_or_token_in_the_extension_log(
    start_extension, secretsmanager, unique
):
    name = unique("sentinel")
    sentinel = "sentinel-value-Lm4-never-logged"
    secretsmanager.create_secret(Name=name, SecretString=sentinel)
    extension = start_extension(CACHECORE_LOG_LEVEL="debug")
    extension.ready()
    extension.secret(name)
    extension.api.shutdown()
    extension.process.wait(10)

    log = extension.output()
    assert sentinel not in log
    assert SESSION_TOKEN not in log
    assert name in log  # names are logged: the log is not simply empty


def test_json_log_format_writes_one_object_a_line_with_no_secret(
    start_extension, secretsmanager, unique
):
    name = unique("json-log")
    sentinel = "sentinel-value-Jv8-never-logged"
    secretsmanager.create_secret(Name=name, SecretString=sentinel)
    extension = start_extension(
        CACHECORE_LOG_LEVEL="debug", CACHECORE_LOG_FORMAT="json"
    )
    extension.ready()
    answer = extension.secret(name)
    metrics = extension.get("/metrics")
    extension.api.shutdown()
    extension.process.wait(10)

    log = extension.output()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert answer.status == 200 and metrics.status == 200
    assert "cachecore_cache_misses_total 1.0" in metrics.text
    assert [line.get("event") for line in lines].count("start") == 1
    fetches = [line for line in lines if line.get("operation") == "GetSecretValue"]
    assert [(f["name"], f["outcome"]) for f in fetches] == [(name, "ok")]
    assert any(line["level"] == "DEBUG" for line in lines)
    assert sentinel not in log
    assert SESSION_TOKEN not in log


def _read_in_background(extension, name: str) -> threading.Thread:
    def read() -> None:
        try:
            extension.secret(name)
        except OSError:
            pass  # cut off at the stop: expected

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def test_prefetch_against_a_black_holed_upstream_ends_init_within_its_2s(
    start_extension,
    proxy,
):
    # CACHECORE_PREFETCH takes at most 2 s of init, even when the batch call
    # never answers (it would take 3 attempts of the upstream timeout: 15 s).
    proxy.black_hole("BatchGetSecretValue")
    extension = start_extension(proxy.url, CACHECORE_PREFETCH="pf/a,pf/b")
    extension.api.wait_registered(30)
    registered = time.monotonic()

    extension.api.wait_waiting(40)
    init_after_register = time.monotonic() - registered

    assert init_after_register < 4.0, (
        f"event/next was first called {init_after_register:.1f}s after register"
    )


def test_shutdown_with_a_hung_request_exits_before_the_event_deadline(
    start_extension,
    proxy,
    secretsmanager,
    unique,
):
    # A request stuck on Secrets Manager must not keep the extension past the
    # SHUTDOWN deadline, or Lambda kills it.
    name = unique("hung-at-shutdown")
    secretsmanager.create_secret(Name=name, SecretString="v")
    extension = start_extension(proxy.url)
    extension.ready()
    proxy.black_hole("GetSecretValue")
    _read_in_background(extension, name)
    proxy.wait_calls("GetSecretValue", 1, timeout=5)

    sent = time.monotonic()
    extension.api.shutdown("spindown")  # deadline: 2 s from now
    code = extension.process.wait(timeout=10)
    took = time.monotonic() - sent

    assert code == 0
    assert took < 2.0, f"exited {took:.2f}s after a SHUTDOWN with a 2 s deadline"


def test_sigterm_with_a_hung_request_exits_within_the_shutdown_timeout(
    start_extension,
    proxy,
    secretsmanager,
    unique,
):
    name = unique("hung-at-sigterm")
    secretsmanager.create_secret(Name=name, SecretString="v")
    extension = start_extension(proxy.url, CACHECORE_SHUTDOWN_TIMEOUT="1")
    extension.ready()
    proxy.black_hole("GetSecretValue")
    _read_in_background(extension, name)
    proxy.wait_calls("GetSecretValue", 1, timeout=5)

    sent = time.monotonic()
    extension.process.send_signal(signal.SIGTERM)
    code = extension.process.wait(timeout=10)
    took = time.monotonic() - sent

    assert code == 0
    assert took < 1.0, f"exited {took:.2f}s after SIGTERM, timeout 1 s"


def test_a_second_sigterm_while_draining_still_exits_0_without_a_traceback(
    start_extension,
):
    extension = start_extension()
    extension.ready()

    extension.process.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    extension.process.send_signal(signal.SIGTERM)
    code = extension.process.wait(timeout=10)

    assert "Traceback" not in extension.output()
    assert code == 0


def test_a_request_that_finishes_during_the_drain_logs_no_error(
    start_extension,
    proxy,
    secretsmanager,
    unique,
):
    # A request that ends after the ports closed still wakes the server's loop
    # through its pipe, which must still be open.
    name = unique("drained")
    secretsmanager.create_secret(Name=name, SecretString="drained-value")
    extension = start_extension(proxy.url)
    extension.ready()
    proxy.delay("GetSecretValue", 0.8)
    answers = []
    reader = threading.Thread(target=lambda: answers.append(extension.secret(name)))
    reader.start()
    proxy.wait_calls("GetSecretValue", 1, timeout=5)

    extension.api.shutdown("spindown")
    assert extension.process.wait(timeout=10) == 0
    reader.join(10)

    assert [a.status for a in answers] == [200]
    output = extension.output()
    assert "Bad file descriptor" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("deadline_ms", [10**15])
def test_a_shutdown_deadline_beyond_the_platform_clock_does_not_crash(
    start_extension,
    deadline_ms,
):
    extension = start_extension()
    extension.ready()

    extension.api.shutdown("spindown", deadline_ms=deadline_ms)
    code = extension.process.wait(timeout=10)

    assert "Traceback" not in extension.output()
    assert code == 0


def test_version_loads_everything_and_prints_the_versions():
    done = subprocess.run(
        [*EXTENSION_COMMAND, "--version"], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert set(versions) >= {"cachecore-lambda", "python", "botocore", "falcon"}


def test_unknown_arguments_are_refused():
    done = subprocess.run(
        [*EXTENSION_COMMAND, "--port", "9"], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert "unknown arguments" in done.stderr
