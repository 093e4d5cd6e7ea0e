"""Readers for the end-to-end tests of the client: a SecretsClient in front of a
real cachecore-server, and an in-process SecretCache on the same moto."""

from __future__ import annotations

import boto3
from support import REGION, TOKEN, sidecar_env

from cachecore import Config, ParameterStoreFetcher, SecretCache, SecretsManagerFetcher
from cachecore_client import RetryPolicy, SecretsClient

#: Quick retries, so a test that spends them all stays fast.
QUICK = RetryPolicy(attempts=3, backoff_base=0.05, backoff_max=0.2, budget=3.0)


def aws_client(service: str, endpoint_url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )


def client_env(moto_url: str, **settings: str) -> dict[str, str]:
    """A sidecar with a token, parameters on moto, and refreshes never capped."""
    return sidecar_env(
        moto_url,
        CACHECORE_TOKEN=TOKEN,
        AWS_ENDPOINT_URL_SSM=moto_url,
        CACHECORE_REFRESH_MIN_INTERVAL="0",
        **settings,
    )


def sidecar_client(port: int, **kwargs: object) -> SecretsClient:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("retry", QUICK)
    return SecretsClient(f"http://127.0.0.1:{port}", environ={}, **kwargs)  # type: ignore[arg-type]


def in_process(moto_url: str) -> SecretCache:
    return SecretCache(
        SecretsManagerFetcher(aws_client("secretsmanager", moto_url)),
        Config(refresh_min_interval=0),
        parameter_fetcher=ParameterStoreFetcher(aws_client("ssm", moto_url)),
    )
