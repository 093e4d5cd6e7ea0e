#!/usr/bin/env python3
"""A stand-in for the cachecore Lambda extension, to prove the RIE harness.

Stdlib only. Copied by the tests into a layer directory as
``extensions/<name>``; the Lambda Extensions API knows it by that file name.

It serves one constant secret on ``127.0.0.1:$CACHECORE_TEST_PORT`` in the
shape of the AWS Parameters and Secrets extension
(``GET /secretsmanager/get?secretId=...`` with header
``X-Aws-Parameters-Secrets-Token: $AWS_SESSION_TOKEN``), registers for INVOKE
and SHUTDOWN, and exits 0 on SHUTDOWN. Every step is a ``stub: ...`` line on
stderr, which RIE copies into its own output, so a test can follow it:

    stub: started pid=... name=...
    stub: registered id=...
    stub: event INVOKE request=...
    stub: shutdown reason=spindown deadline=...
    stub: exit 0

Settings from the environment: ``AWS_LAMBDA_RUNTIME_API`` (set by RIE),
``CACHECORE_TEST_PORT``, ``AWS_SESSION_TOKEN``, ``STUB_SECRET_STRING`` (the
SecretString to serve; a constant by default), ``STUB_ENV_FILE`` (if set,
the environment the stub was started with is written there as JSON, so a test
can see what RIE passes to extensions), ``STUB_EXTENSION_NAME`` (the name to
register under; the file name by default: RIE refuses SHUTDOWN to a name that
is not a file in /opt/extensions, as it takes it for an internal extension),
``STUB_SHUTDOWN_DELAY`` (seconds to linger after SHUTDOWN before exiting, to
see RIE's deadline at work; 0 by default).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_SECRET = '{"user": "stub", "password": "stub-password-Qx7"}'
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"


def say(message: str) -> None:
    print(f"stub: {message}", file=sys.stderr, flush=True)


class SecretHandler(BaseHTTPRequestHandler):
    """GET /secretsmanager/get?secretId=NAME: the constant secret under that name."""

    def do_GET(self) -> None:  # the name http.server calls
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/secretsmanager/get" or "secretId" not in query:
            self._answer(400, {"message": "expected /secretsmanager/get?secretId="})
            return
        token = os.environ.get("AWS_SESSION_TOKEN", "")
        if not token or self.headers.get(TOKEN_HEADER) != token:
            self._answer(403, {"message": "missing or wrong token"})
            return
        name = query["secretId"][0]
        self._answer(
            200,
            {
                "ARN": f"arn:aws:secretsmanager:stub:000000000000:secret:{name}",
                "Name": name,
                "SecretString": os.environ.get("STUB_SECRET_STRING", DEFAULT_SECRET),
                "VersionId": "stub-version",
                "VersionStages": ["AWSCURRENT"],
            },
        )

    def _answer(self, status: int, document: dict[str, object]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def extensions_api(
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One call to the Extensions API; event/next blocks, so no timeout."""
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    connection = http.client.HTTPConnection(host, int(port))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def main() -> int:
    name = os.environ.get("STUB_EXTENSION_NAME") or os.path.basename(sys.argv[0])
    env_file = os.environ.get("STUB_ENV_FILE")
    if env_file:
        with open(env_file, "w") as out:
            json.dump(dict(os.environ), out)
    say(f"started pid={os.getpid()} name={name} t={time.time():.3f}")
    server = ThreadingHTTPServer(
        ("127.0.0.1", int(os.environ["CACHECORE_TEST_PORT"])), SecretHandler
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()

    status, headers, body = extensions_api(
        "POST",
        "/2020-01-01/extension/register",
        body=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
        headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"},
    )
    if status != 200:
        say(f"register failed status={status} body={body!r}")
        return 1
    identifier = {k.lower(): v for k, v in headers.items()}[
        "lambda-extension-identifier"
    ]
    say(f"registered id={identifier}")

    while True:
        status, _, body = extensions_api(
            "GET",
            "/2020-01-01/extension/event/next",
            headers={"Lambda-Extension-Identifier": identifier},
        )
        if status != 200:
            say(f"event/next failed status={status} body={body!r}")
            return 1
        event = json.loads(body)
        if event.get("eventType") == "SHUTDOWN":
            say(
                f"shutdown reason={event.get('shutdownReason')} "
                f"deadline={event.get('deadlineMs')} t={time.time():.3f}"
            )
            time.sleep(float(os.environ.get("STUB_SHUTDOWN_DELAY") or 0))
            server.shutdown()
            server.server_close()
            say(f"exit 0 t={time.time():.3f}")
            return 0
        say(f"event {event.get('eventType')} request={event.get('requestId')}")


if __name__ == "__main__":
    sys.exit(main())
