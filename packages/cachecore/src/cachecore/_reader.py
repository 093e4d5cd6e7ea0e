"""``SecretReader``: the four reads that every way of getting a secret offers.

The in-process ``SecretCache`` and the HTTP client of ``cachecore-client`` both
have these methods with the same signatures, so code written against
``SecretReader`` switches between the sidecar and the in-process cache by
configuration alone. The methods return plain values (text, a parsed JSON object,
bytes); whoever needs version ids or stages uses ``SecretCache.get`` instead.

How a value is turned into each kind is the same everywhere:

- ``get_secret_string``: the SecretString; a binary secret decoded as UTF-8
  (``ValueError`` when it is not UTF-8);
- ``get_secret_json``: that text parsed as JSON, a fresh object on every call
  (``ValueError`` when it is not JSON or is nested too deeply to parse: a plain
  one that says where, holding no part of the secret, not a ``JSONDecodeError``);
- ``get_secret_binary``: the SecretBinary; a string secret encoded as UTF-8
  (``SecretValue.data``);
- ``get_parameter``: the parameter's ``Value``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["SecretReader"]


@runtime_checkable
class SecretReader(Protocol):
    """Reads secrets and SSM parameters, from wherever they are cached.

    ``version_id`` or ``version_stage`` picks a version of a secret (the current
    one by default); ``refresh=True`` asks Secrets Manager anew instead of
    answering from the cache. ``version`` or ``label`` picks a version of a
    parameter, and ``with_decryption=True`` decrypts a SecureString. Failures are
    ``cachecore.CacheError`` subclasses (``SecretNotFoundError``,
    ``AccessDeniedError`` …).
    """

    def get_secret_string(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> str:
        """The secret as text."""
        ...

    def get_secret_json(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> Any:
        """The secret parsed as JSON; a new object on every call."""
        ...

    def get_secret_binary(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> bytes:
        """The secret as bytes."""
        ...

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
    ) -> str:
        """The value of an SSM parameter."""
        ...
