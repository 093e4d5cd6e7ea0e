"""The ``cachecore-server`` command: settings, checks, then a real WSGI server.

Settings come from the command line, then ``CACHECORE_*`` variables, then the
defaults. Everything that can be wrong with them is found before the server binds
its port: a bad value, or no token while auth is on, ends the command with exit
code 2 and one line naming the variable and what it accepts.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import replace

from cachecore import (
    ENV_NAMES,
    TOKEN_SOURCES,
    Config,
    ConfigError,
    ParameterStoreFetcher,
    SecretCache,
    SecretsManagerFetcher,
)

from ._app import TOKEN_HEADER, create_app
from ._logs import configure_logging, set_log_format
from ._serve import (
    DEFAULT_SERVER,
    DEFAULT_THREADS,
    SERVERS,
    bind_address,
    check_bindable,
    serve,
)

__all__ = ["DEFAULT_SERVER", "main"]

logger = logging.getLogger("cachecore_server")

EXIT_CONFIG = 2
EXIT_START = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachecore-server",
        description="Serve AWS Secrets Manager secrets from a local cache over HTTP.",
        epilog=(
            "Settings not given here come from the environment: "
            + ", ".join(sorted(ENV_NAMES.values()))
            + "; the token from "
            + ", ".join(TOKEN_SOURCES)
            + ". See the README for what each accepts."
        ),
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help="port to bind (default 8015; CACHECORE_PORT=8015,2773 binds several)",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=DEFAULT_SERVER,
        help=(
            f"WSGI server to run (default {DEFAULT_SERVER}); granian needs the "
            "extra cachecore-server[granian]"
        ),
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"request threads (default {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start an embedded Secrets Manager (moto) with example secrets",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines, or JSON lines (default text; CACHECORE_LOG_FORMAT)",
    )
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check(config: Config, threads: int, server: str) -> None:
    if not 1 <= threads <= 1024:
        raise ConfigError(f"--threads must be an integer from 1 to 1024, got {threads}")
    if server == "granian":
        from ._granian import available

        if not available():
            raise ConfigError(
                "--server granian needs granian, which is not installed: install "
                "cachecore-server[granian] (or pip install granian)"
            )
        if len(config.ports) != 1:
            raise ConfigError(
                f"--server granian serves one port, but {ENV_NAMES['port']} has "
                f"{len(config.ports)}: use gunicorn or waitress for several"
            )
    if config.auth == "token" and config.token is None:
        raise ConfigError(
            "no token is set: set one of "
            + ", ".join(TOKEN_SOURCES)
            + f" (a value file://PATH is read from that file), or set "
            f"{ENV_NAMES['auth']}=none to serve without a token"
        )


def _token_in_banner(config: Config, made: bool) -> str | None:
    if config.auth == "none":
        return None
    if made:
        return config.token
    return f"${config.token_source}"


def _log_start(
    config: Config,
    args: argparse.Namespace,
    fetcher: SecretsManagerFetcher,
    parameters: ParameterStoreFetcher,
) -> None:
    """The one start-up line: the effective settings (``repr`` hides the token)."""
    fields = {
        "event": "start",
        "server": args.server,
        "threads": args.threads,
        "ports": ",".join(map(str, config.ports)),
        "secrets_manager_endpoint": fetcher.client.meta.endpoint_url,
        "parameter_store_endpoint": parameters.client.meta.endpoint_url,
        "region": fetcher.client.meta.region_name,
    }
    logger.info(
        "starting %s with %s threads: %r; Secrets Manager at %s, Parameter Store "
        "at %s, in %s",
        args.server,
        args.threads,
        config,
        fields["secrets_manager_endpoint"],
        fields["parameter_store_endpoint"],
        fields["region"],
        extra={"fields": fields},
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sidecar; returns the process exit code."""
    args = _parser().parse_args(argv)
    redactor = configure_logging(args.log_level)

    demo = None
    try:
        config = Config.from_env(
            os.environ, host=args.host, port=args.port, log_format=args.log_format
        )
        set_log_format(config.log_format)
        made_token = False
        if args.demo and config.auth == "token" and config.token is None:
            config = replace(
                config, token=secrets.token_urlsafe(24), token_source="demo"
            )
            made_token = True
        _check(config, args.threads, args.server)
        redactor.hide(config.token)

        session = None
        if args.demo:
            from ._demo import DEMO_REGION, DemoBackend, demo_session

            demo = DemoBackend.start()
            session = demo_session()
            config = replace(config, endpoint_url=demo.endpoint_url, region=DEMO_REGION)
        fetcher = SecretsManagerFetcher.from_config(config, session=session)
        parameters = ParameterStoreFetcher(
            session=session,
            region=config.region,
            endpoint_url=demo.endpoint_url if demo is not None else None,
            connect_timeout=config.upstream_timeout,
            read_timeout=config.upstream_timeout,
        )
        cache = SecretCache(fetcher, config, parameter_fetcher=parameters)
        app = create_app(cache, config)
    except ConfigError as exc:
        if demo is not None:
            demo.stop()
        print(f"cachecore-server: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        for port in config.ports:
            address = bind_address(config.host, port)
            check_bindable(config.host, port)
    except OSError as exc:
        if demo is not None:
            demo.stop()
        print(
            f"cachecore-server: cannot listen on {address}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_START

    if not _is_loopback(config.host):
        logger.warning(
            "binding %s, which is not a loopback address: other hosts can reach "
            "the cache",
            config.host,
        )
    if config.auth == "none":
        logger.warning(
            "auth is off (CACHECORE_AUTH=none): any local caller gets secrets"
        )
    _log_start(config, args, fetcher, parameters)
    if demo is not None:
        from ._demo import banner

        host = f"[{config.host}]" if ":" in config.host else config.host
        print(
            banner(
                f"http://{host}:{config.port}",
                TOKEN_HEADER,
                _token_in_banner(config, made_token),
                made_token,
            ),
            flush=True,
        )
    try:
        serve(
            app,
            host=config.host,
            ports=config.ports,
            server=args.server,
            threads=args.threads,
            request_timeout=config.request_timeout,
            max_connections=config.max_connections,
            graceful_timeout=config.shutdown_timeout,
        )
    finally:
        if demo is not None:
            demo.stop()
    return 0
