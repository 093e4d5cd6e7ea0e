"""FaultProxy itself: a real moto server behind it, boto3 in front, as tests use it.

Every assertion is about what a client of the proxy sees: answers, botocore
exceptions, timings, and the threads left after stop().
"""

from __future__ import annotations

import errno
import http.client
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from faultproxy import FaultProxy
from support import HOST, REGION, free_port

VALUE = "s3cret-through-the-proxy"


def make_client(url: str, **config: object):
    settings = {
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "read_timeout": 1,
        "connect_timeout": 1,
        **config,
    }
    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
        config=botocore.config.Config(**settings),
    )


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url) as running:
        yield running


@pytest.fixture
def client(proxy):
    made = make_client(proxy.url)
    yield made
    made.close()


@pytest.fixture
def secret(secretsmanager, unique) -> str:
    name = unique("proxied")
    secretsmanager.create_secret(Name=name, SecretString=VALUE)
    return str(name)


def proxy_threads(proxy: FaultProxy) -> list[str]:
    port = proxy.url.rsplit(":", 1)[1]
    prefix = f"faultproxy-{port}-"
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def raw_request(url: str, operation: str, body: bytes = b"{}") -> socket.socket:
    """Send one Secrets Manager request on a raw socket; the answer is not read."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection((HOST, port), timeout=2)
    head = (
        "POST / HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        f"X-Amz-Target: secretsmanager.{operation}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def wait_until(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout}s: {condition}")
        time.sleep(0.01)


# -- pass-through ----------------------------------------------------------------


def test_pass_through_answers_like_moto_and_counts_each_operation(
    proxy, client, secretsmanager, secret, unique
):
    got = client.get_secret_value(SecretId=secret)
    again = client.get_secret_value(SecretId=secret)
    created = unique("made-through-proxy")
    client.create_secret(Name=created, SecretString="new")

    assert got["SecretString"] == VALUE
    assert got["Name"] == secret
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert again["SecretString"] == VALUE
    assert secretsmanager.get_secret_value(SecretId=created)["SecretString"] == "new"
    assert proxy.calls("GetSecretValue") == 2
    assert proxy.calls("CreateSecret") == 1
    assert proxy.calls("BatchGetSecretValue") == 0

    proxy.reset_counts()
    assert proxy.calls("GetSecretValue") == 0
    client.get_secret_value(SecretId=secret)
    assert proxy.calls("GetSecretValue") == 1


def test_moto_errors_pass_through_unchanged(proxy, client, unique):
    with pytest.raises(ClientError) as caught:
        client.get_secret_value(SecretId=unique("never-created"))

    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "faultproxy" not in caught.value.response["Error"]["Message"]
    assert proxy.calls("GetSecretValue") == 1


# -- fail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("throttle", 400, "ThrottlingException"),
        ("error500", 500, "InternalServiceError"),
        ("deny", 400, "AccessDeniedException"),
        ("not_found", 400, "ResourceNotFoundException"),
    ],
)
def test_each_fail_kind_gives_its_client_error(
    proxy, client, secret, kind, status, code
):
    proxy.fail("GetSecretValue", kind)

    with pytest.raises(ClientError) as caught:
        client.get_secret_value(SecretId=secret)

    error = caught.value
    assert error.operation_name == "GetSecretValue"
    assert error.response["Error"]["Code"] == code
    assert "faultproxy" in error.response["Error"]["Message"]
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert proxy.calls("GetSecretValue") == 1


def test_fail_without_times_lasts_until_cleared(proxy, client, secret):
    proxy.fail("GetSecretValue", "throttle")
    codes = []
    for _ in range(3):
        with pytest.raises(ClientError) as caught:
            client.get_secret_value(SecretId=secret)
        codes.append(caught.value.response["Error"]["Code"])

    proxy.clear("GetSecretValue")

    assert codes == ["ThrottlingException"] * 3
    assert client.get_secret_value(SecretId=secret)["SecretString"] == VALUE
    assert proxy.calls("GetSecretValue") == 4


def test_fail_times_one_fails_once_then_passes(proxy, client, secret):
    proxy.fail("GetSecretValue", "error500", times=1)

    with pytest.raises(ClientError) as caught:
        client.get_secret_value(SecretId=secret)
    second = client.get_secret_value(SecretId=secret)
    third = client.get_secret_value(SecretId=secret)

    assert caught.value.response["Error"]["Code"] == "InternalServiceError"
    assert second["SecretString"] == third["SecretString"] == VALUE
    assert proxy.calls("GetSecretValue") == 3


def test_fault_of_one_operation_leaves_the_others_alone(proxy, client, secret):
    proxy.fail("BatchGetSecretValue", "deny")

    got = client.get_secret_value(SecretId=secret)
    with pytest.raises(ClientError) as caught:
        client.batch_get_secret_value(SecretIdList=[secret])

    assert got["SecretString"] == VALUE
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"


def test_fault_for_none_hits_every_operation_and_own_fault_comes_first(
    proxy, client, secret
):
    proxy.fail(None, "throttle")
    proxy.fail("DescribeSecret", "not_found", times=1)

    codes = []
    for call in (
        lambda: client.get_secret_value(SecretId=secret),
        lambda: client.describe_secret(SecretId=secret),
        lambda: client.describe_secret(SecretId=secret),
        lambda: client.list_secrets(),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        codes.append(caught.value.response["Error"]["Code"])

    assert codes == [
        "ThrottlingException",
        "ResourceNotFoundException",  # its own fault, used up
        "ThrottlingException",  # then the one for every operation
        "ThrottlingException",
    ]
    assert proxy.calls("ListSecrets") == 1


def test_counted_failures_are_exact_under_concurrent_requests(proxy, secret):
    proxy.fail("GetSecretValue", "throttle", times=3)
    client = make_client(proxy.url, max_pool_connections=10)

    def one_call(_: int) -> str:
        try:
            return str(client.get_secret_value(SecretId=secret)["SecretString"])
        except ClientError as error:
            return str(error.response["Error"]["Code"])

    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(one_call, range(10)))
    finally:
        client.close()

    assert sorted(results) == sorted(["ThrottlingException"] * 3 + [VALUE] * 7)
    assert proxy.calls("GetSecretValue") == 10


# -- delay -----------------------------------------------------------------------


def test_delay_adds_at_least_the_latency_then_answers(proxy, client, secret):
    proxy.delay("GetSecretValue", 0.4)

    started = time.monotonic()
    got = client.get_secret_value(SecretId=secret)
    elapsed = time.monotonic() - started
    proxy.delay("GetSecretValue", 0)
    started = time.monotonic()
    client.get_secret_value(SecretId=secret)
    undelayed = time.monotonic() - started

    assert got["SecretString"] == VALUE
    assert elapsed >= 0.4
    assert undelayed < 0.4


def test_delay_comes_before_a_failure(proxy, client, secret):
    proxy.delay(None, 0.3)
    proxy.fail("GetSecretValue", "throttle")

    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        client.get_secret_value(SecretId=secret)

    assert time.monotonic() - started >= 0.3
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"


# -- reset -----------------------------------------------------------------------


def test_reset_gives_connection_closed_error_with_econnreset(proxy, client, secret):
    proxy.reset("GetSecretValue", times=1)

    with pytest.raises(ConnectionClosedError) as caught:
        client.get_secret_value(SecretId=secret)
    after = client.get_secret_value(SecretId=secret)

    # urllib3's ProtocolError holds the OSError; a clean close would give
    # RemoteDisconnected, also a ConnectionResetError but without an errno.
    cause = caught.value.kwargs["error"]
    assert [getattr(arg, "errno", None) for arg in cause.args][1:] == [errno.ECONNRESET]
    assert after["SecretString"] == VALUE
    assert proxy.calls("GetSecretValue") == 2


def test_reset_is_a_tcp_rst_not_a_clean_close(proxy):
    proxy.reset(None)
    sock = raw_request(proxy.url, "GetSecretValue")
    with sock, pytest.raises(ConnectionResetError):
        sock.recv(1024)


# -- black hole ------------------------------------------------------------------


def test_black_hole_gives_read_timeout_and_stop_is_still_quick(proxy, client, secret):
    proxy.black_hole("GetSecretValue")

    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.get_secret_value(SecretId=secret)
    waited = time.monotonic() - started
    held = raw_request(proxy.url, "GetSecretValue")  # one more, still held at stop
    wait_until(lambda: proxy.calls("GetSecretValue") == 2)

    started = time.monotonic()
    proxy.stop()
    stopping = time.monotonic() - started

    with held:
        assert held.recv(1024) == b""  # closed without an answer
    assert waited >= 1.0
    assert stopping < 1.0
    assert proxy_threads(proxy) == []


def test_clearing_a_black_hole_lets_held_connections_go_and_requests_pass(
    proxy, client, secret
):
    proxy.black_hole(None)
    held = raw_request(
        proxy.url, "GetSecretValue", json.dumps({"SecretId": secret}).encode()
    )
    with held:
        held.settimeout(0.3)
        with pytest.raises(TimeoutError):
            held.recv(1024)  # held: no answer at all

        proxy.clear()
        held.settimeout(2)
        assert held.recv(1024) == b""
    assert client.get_secret_value(SecretId=secret)["SecretString"] == VALUE


# -- clear -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "set_fault",
    [
        lambda proxy: proxy.fail("GetSecretValue", "deny"),
        lambda proxy: proxy.reset("GetSecretValue"),
        lambda proxy: proxy.black_hole("GetSecretValue"),
        lambda proxy: proxy.delay("GetSecretValue", 5),
        lambda proxy: proxy.fail(None, "throttle"),
    ],
    ids=["fail", "reset", "black_hole", "delay", "fail-all"],
)
def test_clear_restores_pass_through(proxy, client, secret, set_fault):
    set_fault(proxy)
    proxy.clear()

    started = time.monotonic()
    assert client.get_secret_value(SecretId=secret)["SecretString"] == VALUE
    assert time.monotonic() - started < 1.0


def test_clear_of_one_operation_keeps_the_faults_of_others(proxy, client, secret):
    proxy.fail("GetSecretValue", "deny")
    proxy.fail("DescribeSecret", "deny")

    proxy.clear("GetSecretValue")

    assert client.get_secret_value(SecretId=secret)["SecretString"] == VALUE
    with pytest.raises(ClientError) as caught:
        client.describe_secret(SecretId=secret)
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"


# -- lifetime --------------------------------------------------------------------


def test_stop_ends_kept_alive_and_delayed_connections_and_every_thread(
    moto_url, secret
):
    proxy = FaultProxy(moto_url).start()
    client = make_client(proxy.url)
    try:
        client.get_secret_value(SecretId=secret)  # leaves a kept-alive connection
        proxy.delay("DescribeSecret", 30)
        delayed = raw_request(proxy.url, "DescribeSecret")
        wait_until(lambda: proxy.calls("DescribeSecret") == 1)

        started = time.monotonic()
        proxy.stop()
        stopping = time.monotonic() - started

        with delayed:
            assert delayed.recv(1024) == b""
        assert stopping < 1.0
        assert proxy_threads(proxy) == []
        proxy.stop()  # again: nothing to do
        with pytest.raises(socket.error):
            socket.create_connection((HOST, int(proxy.url.rsplit(":", 1)[1])), 0.5)
    finally:
        client.close()
        proxy.stop()


def test_url_before_start_and_a_second_start_are_errors(moto_url):
    proxy = FaultProxy(moto_url)
    with pytest.raises(RuntimeError):
        _ = proxy.url
    with proxy:
        assert proxy.url.startswith(f"http://{HOST}:")
        with pytest.raises(RuntimeError):
            proxy.start()
    with pytest.raises(RuntimeError):
        proxy.start()


@pytest.mark.parametrize(
    "upstream",
    [
        "http://example.com:5000",
        "http://10.0.0.1:5000",
        "http://169.254.169.254",
        "https://127.0.0.1:5000",
        "127.0.0.1:5000",
    ],
)
def test_only_a_loopback_http_upstream_is_accepted(upstream):
    with pytest.raises(ValueError):
        FaultProxy(upstream)


def test_bad_fault_arguments_are_refused(proxy):
    with pytest.raises(ValueError):
        proxy.fail("GetSecretValue", "explode")
    with pytest.raises(ValueError):
        proxy.fail("GetSecretValue", "throttle", times=0)
    with pytest.raises(ValueError):
        proxy.reset(None, times=-1)
    with pytest.raises(ValueError):
        proxy.delay(None, -1)
    with pytest.raises(ValueError):
        proxy.delay(None, float("nan"))


def test_upstream_down_gives_502_from_the_proxy():
    with FaultProxy(f"http://{HOST}:{free_port()}") as proxy:
        client = make_client(proxy.url)
        try:
            with pytest.raises(ClientError) as caught:
                client.get_secret_value(SecretId="any")
        finally:
            client.close()

    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert caught.value.response["Error"]["Code"] == "502"
    assert "Connection refused" in caught.value.response["Error"]["Message"]
    assert proxy.calls("GetSecretValue") == 1


# -- forwarding, seen by an upstream that echoes what it got ----------------------


class Echo(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode(),
        }
        answer = json.dumps(seen).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "one")
        self.send_header("X-Echo", "two")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((HOST, 0), Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/base"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_forwards_method_path_headers_and_body_and_copies_the_answer(echo_url):
    with FaultProxy(echo_url) as proxy:
        port = int(proxy.url.rsplit(":", 1)[1])
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request(
                "PUT",
                "/a/b?x=1&y=%2F",
                body=b'{"k": "v"}',
                headers={
                    "X-Amz-Target": "secretsmanager.PutSecretValue",
                    "X-Custom": "kept",
                    "Connection": "keep-alive, X-Hop",
                    "X-Hop": "dropped",
                    "Proxy-Authorization": "dropped",
                },
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
            answer_headers = response.getheaders()
        finally:
            connection.close()

    upstream = echo_url.split("/base")[0].removeprefix("http://")
    sent = dict(answer["headers"])
    assert response.status == 201
    assert answer["method"] == "PUT"
    assert answer["path"] == "/base/a/b?x=1&y=%2F"
    assert answer["body"] == '{"k": "v"}'
    assert sent["host"] == upstream
    assert sent["x-custom"] == "kept"
    assert sent["x-amz-target"] == "secretsmanager.PutSecretValue"
    assert sent["content-length"] == "10"
    assert {"connection", "x-hop", "proxy-authorization"}.isdisjoint(sent)
    assert [v for k, v in answer_headers if k.lower() == "x-echo"] == ["one", "two"]
    assert "keep-alive" not in {k.lower() for k, _ in answer_headers}
    assert proxy.calls("PutSecretValue") == 1
