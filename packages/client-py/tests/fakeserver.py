"""A scripted HTTP server on loopback for the client's unit tests.

It answers each request with the next answer of its script (status, headers,
body), or the last one once the script is spent; ``("close", ...)`` closes the
connection without answering, and ``("raw", {}, data)`` sends ``data`` as it is
and closes. It records the request targets and headers.
It shows what a real sidecar cannot be made to do on demand: a 503 of a Lambda
extension that is starting, a kept-alive connection closed under a request.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field

HOST = "127.0.0.1"
JSON = {"Content-Type": "application/json"}
SECRET = json.dumps(
    {"Name": "app/db", "ARN": "arn:x", "VersionId": "v1", "SecretString": "s3cr3t"}
).encode()

Answer = tuple[int | str, dict[str, str], bytes]
OK: Answer = (200, JSON, SECRET)


def error(status: int, aws_type: str, message: str = "no", **headers: str) -> Answer:
    """A JSON error answer in the sidecar's shape."""
    body = json.dumps({"__type": aws_type, "message": message}).encode()
    return (status, {**JSON, **headers}, body)


class FakeTime:
    """A clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@dataclass
class Seen:
    target: str
    headers: dict[str, str]
    connection: int


@dataclass
class FakeServer:
    script: list[Answer]
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self._stop = threading.Event()
        self._connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _next(self) -> Answer:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections += 1
            threading.Thread(
                target=self._handle, args=(conn, self._connections), daemon=True
            ).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(5)
        reader = conn.makefile("rb")
        with conn, reader:
            for _ in range(100):  # requests on one kept-alive connection
                line = reader.readline(65536)
                if not line:
                    return
                headers: dict[str, str] = {}
                while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                target = line.decode("latin-1").split(" ")[1]
                status, extra, body = self._next()
                self.seen.append(Seen(target, headers, number))
                if status == "close":
                    return
                if status == "raw":
                    conn.sendall(body)
                    return
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in extra.items()]
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
