"""Every task of the repository: tests, lint, types, the demo, and the layers.

Run through ./dev, which makes a virtual environment with nox in it; or with a nox
of your own: `nox -s tests`.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

PACKAGES = (
    "packages/cachecore",
    "packages/server-falcon[demo,granian]",
    "packages/lambda-ext",
    "packages/client-py",
)
TEST_TOOLS = (
    "pytest>=8",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "boto3>=1.34",
    "schemathesis>=4,<5",
    "openapi-spec-validator>=0.7",
    "pyyaml>=6",  # tests/test_container.py reads the Kubernetes examples
)
SOURCES = (
    "packages/cachecore/src",
    "packages/server-falcon/src",
    "packages/lambda-ext/src",
    "packages/client-py/src",
)


def _install_packages(session: nox.Session) -> None:
    editable = [arg for package in PACKAGES for arg in ("-e", package)]
    session.install(*editable, *TEST_TOOLS)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests of each package, the end-to-end tests, then the soak.

    With arguments (``nox -s tests -- -k name``), only pytest with them.
    """
    _install_packages(session)
    session.run("pytest", *session.posargs)
    if not session.posargs:
        _soak(session)


@nox.session
def soak(session: nox.Session) -> None:
    """About 45 s per server of load, faults and rotations (tests/soak_run.py)."""
    _install_packages(session)
    _soak(session, *session.posargs)


def _soak(session: nox.Session, *args: str) -> None:
    session.run("python", "-c", "import os; os.makedirs('dist', exist_ok=True)")
    session.run(
        "pytest",
        "tests/soak_run.py",
        "-s",
        *args,
        env={"CACHECORE_SOAK_REPORT": "dist/soak-report.jsonl"},
    )


BENCH_TOOLS = (
    "boto3>=1.34",
    "moto[server]>=5.0",
    "aws-secretsmanager-caching>=1.2",
    "aws-lambda-powertools>=3.0",
    "matplotlib>=3.8",
    "pytest>=8",  # bench/extension_start.py reuses tests/support.py
)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark of issue 8 (bench/run.py): docs/benchmarks.{md,json,png}.

    About 8 minutes on 2 cores, loopback only. Uses wrk where it is installed, and
    installs it with apt-get where it is missing and this runs as root; else a
    Python load generator, which the table names.
    """
    editable = [arg for package in PACKAGES for arg in ("-e", package)]
    session.install(*editable, *BENCH_TOOLS)
    if shutil.which("wrk") is None and shutil.which("apt-get") and os.geteuid() == 0:
        session.run("apt-get", "update", "-qq", external=True, success_codes=[0, 100])
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "wrk",
            external=True,
            success_codes=[0, 100],
        )
    session.run("python", "bench/run.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: the lint rules and the formatting of pyproject.toml."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over the source of every package."""
    _install_packages(session)
    session.install("mypy>=1.10")
    session.run("mypy", *SOURCES)


@nox.session
def demo(session: nox.Session) -> None:
    """The sidecar on 127.0.0.1:8015 in front of an embedded Secrets Manager."""
    session.install("-e", "packages/cachecore", "-e", "packages/server-falcon[demo]")
    session.run("cachecore-server", "--demo", *session.posargs, external=False)


@nox.session
def layer(session: nox.Session) -> None:
    """The Lambda layer zips in dist/: for Python runtimes, and self-contained.

    The second, an executable built in a Debian bullseye root (see
    packages/lambda-ext/layer/EXE.md), needs root and about 6 minutes the first
    time; `nox -s layer -- python` builds only the first.
    """
    session.run("python", "packages/lambda-ext/layer/build.py", "--out", "dist")
    if "python" not in session.posargs:
        session.run("python", "packages/lambda-ext/layer/build_exe.py", "--out", "dist")
