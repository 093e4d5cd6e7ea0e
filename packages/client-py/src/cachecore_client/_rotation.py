"""Connect to a database whose credentials rotate: refresh once on an auth failure.

A rotation changes the password in the database and in Secrets Manager; a cached
copy of the secret is then out of date until its TTL ends. ``connect_with_rotation``
bridges that gap: it connects with the cached credentials and, when the caller
says a failure means "wrong password", asks for the secret anew once and connects
once more. It works with any ``SecretReader``: the sidecar's client or an
in-process ``SecretCache``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from cachecore import SecretReader

__all__ = ["connect_with_rotation"]

logger = logging.getLogger(__name__)

Connection = TypeVar("Connection")


def connect_with_rotation(
    reader: SecretReader,
    secret_id: str,
    connect: Callable[[Any], Connection],
    *,
    is_auth_failure: Callable[[Exception], bool],
) -> Connection:
    """``connect(credentials)`` with the secret as JSON; on an auth failure, again.

    ``connect`` gets the parsed secret (for a database secret, a dict with
    ``username``, ``password`` …) and returns a connection. When it raises an
    exception for which ``is_auth_failure`` is true, the secret is read with
    ``refresh=True`` and ``connect`` is called once more; whatever that second
    call raises reaches the caller. Any other exception reaches the caller at
    once, without a refresh. When the refresh itself fails, its error reaches
    the caller with the auth failure as its ``__cause__``.
    """
    credentials = reader.get_secret_json(secret_id)
    try:
        return connect(credentials)
    except Exception as exc:
        if not is_auth_failure(exc):
            raise
        auth_failure = exc
        logger.info(
            "connecting with %s failed to authenticate (%s); reading it anew",
            secret_id,
            type(exc).__name__,
        )

    try:
        credentials = reader.get_secret_json(secret_id, refresh=True)
    except Exception as refresh_error:
        raise refresh_error from auth_failure
    return connect(credentials)
