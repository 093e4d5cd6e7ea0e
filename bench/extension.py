"""Start time of the Lambda extension, with ``extension_start``'s own measurement.

Process start to the first answer on the port, to the register request, and to
the first 200; beside a bare ``python -c "import boto3"``. Medians over the runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import extension_start

NAME = "bench/extension-start"


def run(moto_url: str, runs: int) -> dict[str, Any]:
    """Medians in seconds, and each run's figures."""
    from common import create_secrets

    create_secrets(moto_url, [NAME], "e" * 64)
    env = extension_start.sidecar_env(moto_url, AWS_SESSION_TOKEN=extension_start.TOKEN)
    command = [sys.executable, "-m", "cachecore_lambda"]
    starts = [extension_start.one_start(command, env, NAME) for _ in range(runs)]
    boto = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import boto3"], check=True)
        boto.append(time.monotonic() - started)
    return {
        "runs": runs,
        "answer_s": statistics.median(s["answer"] for s in starts),
        "register_s": statistics.median(s["register"] for s in starts),
        "ready_s": statistics.median(s["ready"] for s in starts),
        "import_boto3_s": statistics.median(boto),
        "each": starts,
        "import_boto3_each": boto,
    }
