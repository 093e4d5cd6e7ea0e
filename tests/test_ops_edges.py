"""Edges of the operations features, found by a break test:

- metrics by name never count names refused as invalid (never looked up);
- token redaction covers the traceback text of a log record;
- under gunicorn a fractional CACHECORE_SHUTDOWN_TIMEOUT is kept, not rounded up;
- a signal in the first second of start-up still ends with exit 0.
"""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import threading
import time

import pytest
from faultproxy import FaultProxy
from prometheus_client.parser import text_string_to_metric_families
from support import TOKEN, free_port, server_command, sidecar_env

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}


def _names_in_metrics(text: str) -> set[str]:
    return {
        sample.labels["name"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cachecore_lookups_by_name_total"
    }


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_metrics_names_do_not_label_names_refused_as_invalid(
    start_sidecar, moto_url, server
):
    """A name refused with 400 (control character, NUL, over 2048 bytes) was
    never a lookup, yet it becomes a label value and takes one of the 1000
    slots: 1000 names of ~8 KB make a /metrics answer of several MB, and the
    names the application really reads are then counted only as unnamed."""
    sidecar = start_sidecar(
        server=server,
        env=sidecar_env(
            moto_url, CACHECORE_TOKEN=TOKEN, CACHECORE_METRICS_NAMES="true"
        ),
    )
    refused = ["%0Aforged%20line", "a%00b", "x" * 2100]
    for name in refused:
        assert sidecar.get(f"/cache?name={name}", headers=AUTH).status == 400

    text = sidecar.get("/metrics", headers=AUTH).text
    labelled = _names_in_metrics(text)
    # Only refused names were asked for, so no name at all is a label.
    assert labelled == set(), (
        f"names refused as invalid are labels: {sorted(n[:20] for n in labelled)}"
    )


def test_token_is_hidden_in_the_traceback_of_a_record_too(capsys):
    """RedactingFilter replaces the token in the message and the fields, not in
    the exception text, in either format (README, Logs: "the token is replaced
    by (hidden) ... wherever it would appear")."""
    from cachecore_server._logs import configure_logging, set_log_format

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        for log_format in ("text", "json"):
            redactor = configure_logging("INFO")
            set_log_format(log_format)
            stream = io.StringIO()
            root.handlers[0].setStream(stream)
            redactor.hide(TOKEN)
            try:
                raise ValueError(f"a header held {TOKEN}")
            except ValueError:
                logging.getLogger("cachecore_server").exception("a fault")
            written = stream.getvalue()
            assert TOKEN not in written, f"{log_format}: {written!r}"
    finally:
        root.handlers[:], root.level = saved


def test_gunicorn_stops_within_a_fractional_shutdown_timeout(
    start_sidecar, moto_url, secretsmanager, unique
):
    """CACHECORE_SHUTDOWN_TIMEOUT=1.5 with a request stuck upstream: gunicorn's
    graceful_timeout is ceil()ed to 2, so the stop takes ~2.2 s (0.3 -> ~1.3 s,
    2.2 -> ~3.3 s); waitress keeps to ~1.5 s + 0.4 s."""
    name = unique("stop-fraction")
    secretsmanager.create_secret(Name=name, SecretString="v")
    with FaultProxy(moto_url) as proxy:
        env = sidecar_env(
            moto_url,
            CACHECORE_TOKEN=TOKEN,
            CACHECORE_SHUTDOWN_TIMEOUT="1.5",
            CACHECORE_UPSTREAM_TIMEOUT="30",
        )
        env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = proxy.url
        sidecar = start_sidecar(server="gunicorn", env=env)
        proxy.black_hole("GetSecretValue")

        def read() -> None:
            try:
                sidecar.get(f"/cache?name={name}", headers=AUTH, timeout=40)
            except OSError:
                pass

        threading.Thread(target=read, daemon=True).start()
        proxy.wait_calls("GetSecretValue", 1, timeout=10)
        sent = time.monotonic()
        sidecar.process.send_signal(signal.SIGTERM)
        assert sidecar.process.wait(timeout=15) == 0
        took = time.monotonic() - sent
    assert took < 1.5 + 0.5, f"stopped {took:.2f}s after SIGTERM, timeout 1.5 s"


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_still_exits_0(moto_url, server, signum):
    """README: on SIGTERM (or SIGINT) it exits 0. In the ~1 s before the server
    installs its handlers (imports, botocore clients), the default disposition
    kills it: -15 (a container reports 143), or a KeyboardInterrupt traceback on
    stderr, not JSON even with CACHECORE_LOG_FORMAT=json, and -2."""
    port = free_port()
    process = subprocess.Popen(
        [*server_command(), "--server", server, "--port", str(port)],
        env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN, CACHECORE_LOG_FORMAT="json"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(0.3)
        process.send_signal(signum)
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert code == 0, f"exit {code}; {output[-300:]!r}"
