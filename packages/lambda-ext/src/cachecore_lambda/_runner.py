"""The extension's life: settings, port, registration, events, and a clean stop.

In order, so that the port answers as early as possible:

1. read the settings (``_env``); a bad one is reported to Lambda with
   ``init/error`` (type ``Extension.ConfigInvalid``, the message naming the
   variable) and the process exits 1;
2. listen on every port and serve the ``Gate``, which answers 503 with
   ``Retry-After`` until the cache is ready: a request is never refused;
3. build the cache in a thread (this loads botocore and Falcon) while the main
   thread registers for INVOKE and SHUTDOWN under the name ``cachecore``;
4. once the cache is ready, prefetch ``CACHECORE_PREFETCH`` (at most 100 ids; init
   waits 2 seconds for it at most), then wait on ``event/next``;
5. on SHUTDOWN, or SIGTERM or SIGINT, stop listening, let the requests under way
   finish until ``SHUTDOWN_MARGIN`` before the deadline, and exit 0 at once (the
   interpreter's own clean-up is skipped); later stop signals are ignored.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from cachecore import TOKEN_SOURCES, Config, ConfigError, RedactingFilter
from cachecore._config import ENV_LOG_FORMAT, ENV_NAMES
from cachecore_server._logs import configure_logging
from cachecore_server._waitress import GracefulLoop, create_server

from ._api import ExtensionsAPI, ExtensionsAPIError
from ._env import PREFETCH_TIMEOUT, LambdaSettings, read_settings
from ._gate import Gate

__all__ = ["EXTENSION_NAME", "main", "run"]

logger = logging.getLogger("cachecore_lambda")

EXTENSION_NAME = "cachecore"
EVENTS = ["INVOKE", "SHUTDOWN"]
#: Request threads: a function instance handles one invocation at a time.
THREADS = 4
#: Time kept in hand before a shutdown deadline, for exiting itself.
SHUTDOWN_MARGIN = 0.2
#: The longest stop there can be: Lambda's longest invocation.
MAX_STOP = 900.0
EXIT_FAILED = 1


class _Stop(Exception):
    """SIGTERM or SIGINT arrived."""


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore_stop_signals() -> None:
    """From now on the extension is stopping: more signals change nothing."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _ignore_stop_signals()
    raise _Stop(signal.Signals(signum).name)


def _check_token(config: Config) -> None:
    if config.auth == "token" and config.token is None:
        raise ConfigError(
            "no token is set: set one of "
            + ", ".join(TOKEN_SOURCES)
            + f" (Lambda sets AWS_SESSION_TOKEN), or set {ENV_NAMES['auth']}=none"
        )


def _listen(host: str, ports: Sequence[int]) -> list[socket.socket]:
    """Bind and listen on every port; raises ``OSError`` naming the address."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host.strip("[]"), port))
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
            sock.listen(1024)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Builder(threading.Thread):
    """Builds the cache and its app off the main thread, then opens the gate."""

    def __init__(self, config: Config, gate: Gate) -> None:
        super().__init__(name="cachecore-build", daemon=True)
        self._config = config
        self._gate = gate
        self.cache: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            from cachecore import ParameterStoreFetcher, SecretCache
            from cachecore import SecretsManagerFetcher as Fetcher
            from cachecore_server._app import create_app

            config = self._config
            fetcher = Fetcher.from_config(config)
            parameters = ParameterStoreFetcher(
                region=config.region,
                connect_timeout=config.upstream_timeout,
                read_timeout=config.upstream_timeout,
            )
            self.cache = SecretCache(fetcher, config, parameter_fetcher=parameters)
            self._gate.open(create_app(self.cache, config))
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def _configure_logging(level: str, log_format: str | None = None) -> RedactingFilter:
    """Text lines (``[cachecore] LEVEL message``), or JSON lines when asked.

    ``log_format`` is the raw ``CACHECORE_LOG_FORMAT``: anything but ``json`` logs
    text until ``Config`` reports a bad value through ``init/error``.
    """
    wanted = (log_format or "").strip().lower()
    return configure_logging(
        level,
        "json" if wanted == "json" else "text",
        text_format="[cachecore] %(levelname)s %(message)s",
    )


class _Extension:
    """One run of the extension; ``main`` drives it."""

    def __init__(self, api: ExtensionsAPI) -> None:
        self.api = api
        self.loop: GracefulLoop | None = None
        self.serving: threading.Thread | None = None

    def fail_init(self, error_type: str, message: str) -> int:
        """Report a failure to start (registering first if need be) and give up."""
        logger.error("%s", message)
        try:
            if self.api.identifier is None:
                self.api.register(EXTENSION_NAME, EVENTS)
            self.api.init_error(error_type, message)
        except ExtensionsAPIError as exc:
            logger.error("could not report the failure to Lambda: %s", exc)
        self.stop_serving(0.0)
        return EXIT_FAILED

    def serve(self, config: Config, gate: Gate, sockets: list[socket.socket]) -> None:
        """Serve ``gate`` on the bound ``sockets`` in a thread of its own."""
        server = create_server(
            gate,
            sockets=sockets,
            request_timeout=config.request_timeout,
            max_connections=config.max_connections,
            threads=THREADS,
            ident="cachecore",
            clear_untrusted_proxy_headers=False,
        )
        self.loop = GracefulLoop(server)
        self.serving = threading.Thread(
            target=self.loop.run, name="cachecore-http", daemon=True
        )
        self.serving.start()

    def stop_serving(self, budget: float) -> bool:
        """Stop within ``budget`` seconds; whether every request under way finished."""
        if self.loop is None:
            return True
        drained = self.loop.stop(max(budget, 0.0))
        if self.serving is not None:
            self.serving.join(timeout=0.5)
        return drained


def _prefetch(cache: Any, ids: tuple[str, ...]) -> None:
    """Prefetch ``ids``, waiting at most ``PREFETCH_TIMEOUT`` seconds for it.

    The cache starts no call after that time, but a call under way may take the
    upstream timeout and its retries: it goes on in the background, and init
    does not wait for it.
    """
    if not ids:
        return

    def prefetch() -> None:
        failed = cache.prefetch(ids, timeout=PREFETCH_TIMEOUT)
        for secret_id, error in failed.items():
            logger.warning("prefetch of %s failed: %s", secret_id, error.code)

    worker = threading.Thread(target=prefetch, name="cachecore-prefetch", daemon=True)
    worker.start()
    worker.join(PREFETCH_TIMEOUT)
    if worker.is_alive():
        logger.warning(
            "prefetch is still waiting for Secrets Manager after %gs; init goes on "
            "without it",
            PREFETCH_TIMEOUT,
        )


def _budget(event: dict[str, Any], settings: LambdaSettings) -> float:
    """Seconds left to stop in, from the SHUTDOWN event's deadline."""
    deadline_ms = event.get("deadlineMs")
    if isinstance(deadline_ms, int | float) and not isinstance(deadline_ms, bool):
        left = deadline_ms / 1000.0 - time.time() - SHUTDOWN_MARGIN
        if math.isfinite(left):
            return min(max(0.0, left), MAX_STOP)
    return _signal_budget(settings.shutdown_timeout)


def _signal_budget(timeout: float) -> float:
    """Seconds to drain in when ``timeout`` is the whole time to stop in."""
    return max(0.0, timeout - SHUTDOWN_MARGIN)


def _version() -> int:
    """Load everything the extension loads and print the versions, as JSON.

    It builds a cache and its app with made-up settings and no network, so it
    shows that a build (the executable layer above all) holds every module.
    """
    import json
    import platform
    import ssl

    import botocore
    import falcon
    import waitress  # noqa: F401

    from cachecore import SecretCache, SecretsManagerFetcher
    from cachecore_server._app import create_app

    config = Config(region="us-east-1", auth="none")
    fetcher = SecretsManagerFetcher(region="us-east-1")
    create_app(SecretCache(fetcher, config), config)
    fetcher.close()
    versions = {
        "cachecore-lambda": _distribution_version(),
        "python": platform.python_version(),
        "botocore": botocore.__version__,
        "falcon": falcon.__version__,
        "openssl": ssl.OPENSSL_VERSION,
    }
    print(json.dumps(versions))
    return 0


def _distribution_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cachecore-lambda")
    except PackageNotFoundError:
        return "unknown"


def main(
    environ: dict[str, str] | None = None, argv: Sequence[str] | None = None
) -> int:
    """Run the extension until SHUTDOWN; returns the process exit code.

    ``--version`` prints the versions of what it runs on, and exits.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        return _version()
    if args:
        print(f"cachecore: unknown arguments {args!r}; only --version", file=sys.stderr)
        return EXIT_FAILED
    env = dict(os.environ if environ is None else environ)
    started = time.monotonic()
    redactor = _configure_logging("INFO", env.get(ENV_LOG_FORMAT))
    address = env.get("AWS_LAMBDA_RUNTIME_API", "").strip()
    if not address:
        logger.error("AWS_LAMBDA_RUNTIME_API is not set: not running inside Lambda")
        return EXIT_FAILED
    try:
        extension = _Extension(ExtensionsAPI(address))
    except ExtensionsAPIError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED

    previous = {signum: signal.signal(signum, _on_signal) for signum in _STOP_SIGNALS}
    try:
        return _run(extension, env, started, redactor)
    except _Stop as stop:
        logger.info("%s: stopping", stop)
        extension.stop_serving(_signal_budget(_settings_timeout(env)))
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _settings_timeout(env: dict[str, str]) -> float:
    try:
        return read_settings(env).shutdown_timeout
    except ConfigError:
        return SHUTDOWN_MARGIN


def _run(
    extension: _Extension,
    env: dict[str, str],
    started: float,
    redactor: RedactingFilter,
) -> int:
    try:
        settings = read_settings(env)
        logging.getLogger().setLevel(settings.log_level)
        config = Config.from_env(settings.environ)
        _check_token(config)
    except ConfigError as exc:
        return extension.fail_init("Extension.ConfigInvalid", str(exc))
    redactor.hide(config.token)
    for warning in settings.warnings:
        logger.warning("%s", warning)

    try:
        sockets = _listen(config.host, config.ports)
    except OSError as exc:
        return extension.fail_init("Extension.PortUnavailable", str(exc.strerror))
    gate = Gate()
    extension.serve(config, gate, sockets)
    listening = time.monotonic() - started
    builder = _Builder(config, gate)
    builder.start()

    try:
        extension.api.register(EXTENSION_NAME, EVENTS)
    except ExtensionsAPIError as exc:
        logger.error("%s", exc)
        extension.stop_serving(0.0)
        return EXIT_FAILED
    registered = time.monotonic() - started
    builder.join()
    if builder.error is not None:
        error = builder.error
        kind = "ConfigInvalid" if isinstance(error, ConfigError) else "InitFailed"
        return extension.fail_init(f"Extension.{kind}", str(error))
    ready = time.monotonic() - started
    logger.info(
        "serving %s on port(s) %s: listening after %.3fs, registered after %.3fs, "
        "ready after %.3fs; %r",
        EXTENSION_NAME,
        ",".join(map(str, config.ports)),
        listening,
        registered,
        ready,
        config,
        extra={
            "fields": {
                "event": "start",
                "ports": ",".join(map(str, config.ports)),
                "listening_s": round(listening, 3),
                "registered_s": round(registered, 3),
                "ready_s": round(ready, 3),
            }
        },
    )
    _prefetch(builder.cache, settings.prefetch)

    while True:
        try:
            event = extension.api.next_event()
        except ExtensionsAPIError as exc:
            logger.error("%s", exc)
            extension.stop_serving(settings.shutdown_timeout)
            return EXIT_FAILED
        event_type = event.get("eventType")
        if event_type == "SHUTDOWN":
            _ignore_stop_signals()
            break
        logger.debug("event %s", event_type)

    reason = str(event.get("shutdownReason", "unknown"))
    budget = _budget(event, settings)
    drained = extension.stop_serving(budget)
    logger.info(
        "SHUTDOWN (%s): stopped %s",
        reason,
        "after the requests under way" if drained else "with requests unfinished",
    )
    builder.cache.close()
    return 0


def run() -> None:
    """Console-script and ``python -m cachecore_lambda`` entry point.

    The process ends with ``os._exit`` once the logs are flushed: the requests
    still running at the deadline, and the interpreter's own clean-up (which
    takes up to a second with botocore loaded), must not hold it past Lambda's
    deadline.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
