"""In-process hit latency of three secret caches against one moto, and of a dict.

Each library reads one warm key through its own public call. A sample is the mean
time of a block of ``BLOCK`` calls in a plain ``for`` loop (one timer read per
block, so the timer's own cost does not swamp the dict); the median and p99 are
over the blocks. The dict lookup is the floor: the same loop around ``dict.get``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import create_secrets, secretsmanager

BLOCK = 100
BLOCKS = 2000
NAME = "bench/inprocess-hot"
VALUE = '{"username": "app", "password": "' + "p" * 40 + '"}'


def _measure(call: Callable[[], Any]) -> dict[str, float]:
    """Median and p99, in nanoseconds, of the per-call mean over each block."""
    for _ in range(BLOCK * 20):  # warm-up
        call()
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(BLOCKS):
            started = clock()
            for _ in range(BLOCK):
                call()
            samples.append((clock() - started) / BLOCK)
    finally:
        gc.enable()
    samples.sort()
    return {
        "median_ns": statistics.median(samples),
        "p99_ns": samples[int(len(samples) * 0.99) - 1],
        "calls": BLOCK * BLOCKS,
    }


def run(moto_url: str) -> dict[str, dict[str, float]]:
    """The four latencies, keyed by what was measured."""
    create_secrets(moto_url, [NAME], VALUE)
    results: dict[str, dict[str, float]] = {}

    floor = {NAME: VALUE}
    results["dict.get (floor)"] = _measure(lambda: floor.get(NAME))

    from cachecore import Config, SecretCache, SecretsManagerFetcher

    cache = SecretCache(
        SecretsManagerFetcher(secretsmanager(moto_url)), Config(ttl=300)
    )
    assert cache.get(NAME).secret_string == VALUE
    results["cachecore.SecretCache.get"] = _measure(lambda: cache.get(NAME))
    cache.close()

    from aws_secretsmanager_caching import SecretCache as AwsSecretCache

    aws = AwsSecretCache(client=secretsmanager(moto_url))
    assert aws.get_secret_string(NAME) == VALUE
    results["aws-secretsmanager-caching get_secret_string"] = _measure(
        lambda: aws.get_secret_string(NAME)
    )

    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import (
        DEFAULT_PROVIDERS,
    )

    DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(
        boto3_client=secretsmanager(moto_url)
    )
    assert parameters.get_secret(NAME, max_age=300) == VALUE
    results["Powertools parameters.get_secret (max_age=300)"] = _measure(
        lambda: parameters.get_secret(NAME, max_age=300)
    )
    return results
