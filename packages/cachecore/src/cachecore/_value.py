"""The immutable values a cache hands out: a version of a secret, or a parameter.

A ``SecretValue`` is shared by every caller that reads the same cache entry, so it
is frozen and holds only immutable fields; ``json()`` parses anew on every call so
that no caller can change what another one sees. Its ``repr`` names the secret and
its version but never shows the payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ParameterValue", "SecretValue"]


@dataclass(frozen=True, slots=True)
class SecretValue:
    """One version of one secret as the backend returned it.

    Exactly one of ``secret_string`` and ``secret_binary`` is set. ``fetched_at`` is
    the reading of the cache's monotonic clock when the value arrived; it is only
    meaningful next to that same clock.
    """

    name: str
    arn: str | None = None
    version_id: str | None = None
    version_stages: tuple[str, ...] = ()
    secret_string: str | None = field(default=None, repr=False)
    secret_binary: bytes | None = field(default=None, repr=False)
    created_date: datetime | None = None
    fetched_at: float = 0.0

    @property
    def is_binary(self) -> bool:
        """True when the secret holds bytes rather than a string."""
        return self.secret_binary is not None

    @property
    def text(self) -> str:
        """The secret as text: the string, or the bytes decoded as UTF-8."""
        if self.secret_string is not None:
            return self.secret_string
        data = self.secret_binary or b""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            offset = exc.start
        # Raised outside the handler: the decode error's repr would show the bytes,
        # so it must not even be this error's context.
        raise ValueError(
            f"the binary secret {self.name!r} is not UTF-8 text (bad byte at offset "
            f"{offset})"
        )

    @property
    def data(self) -> bytes:
        """The secret as bytes: the binary secret, or the string encoded as UTF-8."""
        if self.secret_binary is not None:
            return self.secret_binary
        # surrogatepass: a JSON secret may hold a lone surrogate, as servers allow
        return (self.secret_string or "").encode("utf-8", "surrogatepass")

    def json(self) -> Any:
        """Parse the secret as JSON; every call returns a fresh object.

        A secret that is not JSON, or is nested too deeply to parse, raises a
        plain ``ValueError`` that says where, never a ``json.JSONDecodeError``
        (whose ``doc`` would hold the whole secret), with no cause or context.
        """
        text = self.text
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        except ValueError:  # a number of more digits than int() may read
            reason = "it holds a number too long to read"
        except RecursionError:
            reason = "it is nested too deeply"
        raise ValueError(f"the secret {self.name!r} is not JSON: {reason}")


@dataclass(frozen=True, slots=True)
class ParameterValue:
    """One SSM Parameter Store parameter as GetParameter returned it.

    ``type`` is ``String``, ``StringList`` or ``SecureString`` (a SecureString read
    without decryption holds its ciphertext). ``fetched_at`` is as for
    ``SecretValue``.
    """

    name: str
    type: str
    value: str = field(repr=False)
    version: int | None = None
    selector: str | None = None
    source_result: str | None = None
    arn: str | None = None
    data_type: str | None = None
    last_modified_date: datetime | None = None
    fetched_at: float = 0.0
