"""A client of Lambda's Extensions API (2020-01-01), on the standard library only.

Lambda gives its address in ``AWS_LAMBDA_RUNTIME_API``. An extension registers
(answered with its identifier), then long-polls ``event/next`` for INVOKE and
SHUTDOWN events; it reports a failure to start with ``init/error`` and one before
exiting with ``exit/error``. Each call uses a new connection: there are a few per
invocation at most, and a long poll must not share a connection with anything.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

__all__ = ["ExtensionsAPI", "ExtensionsAPIError"]

_BASE = "/2020-01-01/extension"
#: Time to connect and to get an answer to anything but the long poll.
_TIMEOUT = 10.0


class ExtensionsAPIError(Exception):
    """The Extensions API refused a call or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ExtensionsAPI:
    """Calls of one extension to the Extensions API at ``address`` (host:port)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if (
            not host
            or not (port.isascii() and port.isdigit())
            or not 1 <= int(port) <= 65535
        ):
            raise ExtensionsAPIError(
                f"AWS_LAMBDA_RUNTIME_API must be host:port, got {address!r}"
            )
        self._host = host.strip("[]")
        self._port = int(port)
        self.identifier: str | None = None

    def _call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = _TIMEOUT,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(method, _BASE + path, body=body, headers=headers)
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        except (OSError, http.client.HTTPException) as exc:
            raise ExtensionsAPIError(
                f"the Extensions API at {self._host}:{self._port} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        finally:
            connection.close()

    def _identified(self) -> dict[str, str]:
        if self.identifier is None:
            raise ExtensionsAPIError("the extension has not registered")
        return {"Lambda-Extension-Identifier": self.identifier}

    @staticmethod
    def _refused(what: str, status: int, body: bytes) -> ExtensionsAPIError:
        try:
            answer = json.loads(body)
            detail = f"{answer.get('errorType')}: {answer.get('errorMessage')}"
        except (ValueError, AttributeError):
            detail = body[:200].decode("utf-8", "replace")
        return ExtensionsAPIError(f"{what} was refused with {status}: {detail}", status)

    def register(self, name: str, events: list[str]) -> dict[str, Any]:
        """Register as ``name`` for ``events``; keeps the identifier Lambda gives."""
        status, headers, body = self._call(
            "POST",
            "/register",
            headers={
                "Lambda-Extension-Name": name,
                "Content-Type": "application/json",
            },
            body=json.dumps({"events": events}).encode(),
        )
        if status != 200:
            raise self._refused("register", status, body)
        identifier = headers.get("lambda-extension-identifier")
        if not identifier:
            raise ExtensionsAPIError("register answered without an identifier", status)
        self.identifier = identifier
        try:
            answer = json.loads(body) if body.strip() else {}
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

    def next_event(self) -> dict[str, Any]:
        """Wait for the next event, as long as it takes."""
        status, _, body = self._call(
            "GET", "/event/next", headers=self._identified(), timeout=None
        )
        if status != 200:
            raise self._refused("event/next", status, body)
        try:
            event = json.loads(body)
        except ValueError:
            raise ExtensionsAPIError(
                "event/next answered with no JSON", status
            ) from None
        if not isinstance(event, dict):
            raise ExtensionsAPIError("event/next answered with no event", status)
        return event

    def _report(self, path: str, error_type: str, message: str) -> None:
        headers = {
            **self._identified(),
            "Lambda-Extension-Function-Error-Type": error_type,
            "Content-Type": "application/json",
        }
        body = json.dumps(
            {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        ).encode()
        status, _, answer = self._call("POST", path, headers=headers, body=body)
        if status != 202:
            raise self._refused(path.lstrip("/"), status, answer)

    def init_error(self, error_type: str, message: str) -> None:
        """Tell Lambda that the extension failed to start."""
        self._report("/init/error", error_type, message)

    def exit_error(self, error_type: str, message: str) -> None:
        """Tell Lambda why the extension is about to exit."""
        self._report("/exit/error", error_type, message)
