"""Which ``SecretReader`` to use, chosen by configuration alone.

``reader_from_env`` gives a ``SecretsClient`` (the sidecar) or an in-process
``cachecore.SecretCache``, as ``CACHECORE_CLIENT_MODE`` says, and the client an
in-process fallback when ``CACHECORE_CLIENT_FALLBACK`` asks for one. Code written
against ``SecretReader`` runs unchanged either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachecore import (
    Config,
    ParameterStoreFetcher,
    SecretCache,
    SecretReader,
    SecretsManagerFetcher,
)

from ._client import SecretsClient
from ._config import (
    ENV_FALLBACK,
    ENV_MODE,
    FALLBACK_CHOICES,
    MODE_CHOICES,
    environment,
    resolve_choice,
)

__all__ = ["in_process_cache", "reader_from_env"]


def in_process_cache(environ: Mapping[str, str] | None = None) -> SecretCache:
    """A ``SecretCache`` of secrets and parameters, set up as the sidecar would be.

    Its settings are ``Config.from_env(environ)``: the ``CACHECORE_*`` variables,
    and AWS's own for region, endpoints and credentials, which this process then
    needs just as the sidecar does.
    """
    config = Config.from_env(environment(environ))
    return SecretCache(
        SecretsManagerFetcher.from_config(config),
        config,
        parameter_fetcher=ParameterStoreFetcher.from_config(config),
    )


def reader_from_env(
    environ: Mapping[str, str] | None = None, **client_arguments: Any
) -> SecretReader:
    """The reader that the environment asks for.

    ``CACHECORE_CLIENT_MODE``: ``sidecar`` (the default) gives a
    ``SecretsClient`` made with ``client_arguments``; ``in-process`` gives
    ``in_process_cache(environ)``. ``CACHECORE_CLIENT_FALLBACK``: ``off`` (the
    default) or ``in-process``, which gives the client an in-process cache to
    read from, built on first need, when the sidecar cannot be reached.
    """
    env = environment(environ)
    mode = resolve_choice(ENV_MODE, env.get(ENV_MODE), MODE_CHOICES, "sidecar")
    fallback = resolve_choice(
        ENV_FALLBACK, env.get(ENV_FALLBACK), FALLBACK_CHOICES, "off"
    )

    if mode == "in-process":
        return in_process_cache(env)
    if fallback == "in-process":
        client_arguments.setdefault("fallback", lambda: in_process_cache(env))
    return SecretsClient(environ=env, **client_arguments)
