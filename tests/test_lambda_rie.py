"""The built Python layer under AWS's runtime interface emulator, with a function.

RIE runs ``lambda_function/bootstrap`` (a custom runtime, stdlib only) with the
layer that ``packages/lambda-ext/layer/build.py`` builds bind-mounted over /opt in
a private namespace, so that RIE starts ``/opt/extensions/cachecore`` as Lambda
would; see ``lambda_rie`` for how RIE behaves. The function reads a secret made
in moto through the extension during its init and on every invoke. The layer is
built once per session (pip downloads its dependencies from PyPI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lambda_rie import (
    RIE,
    SHUTDOWN_DEADLINE,
    default_cache_dir,
    free_port,
    namespace_available,
    rie_binary,
)

HERE = Path(__file__).parent
ROOT = HERE.parent
BOOTSTRAP = HERE / "lambda_function" / "bootstrap"
REGION = "us-east-1"
TOKEN = "sentinel-token-rie-Hk4"
SECRET_STRING = '{"user": "rie", "password": "rie-password-Zp2"}'

_why_not = namespace_available()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=str(_why_not))


@pytest.fixture(scope="session")
def rie_path() -> Path:
    return rie_binary(default_cache_dir())


@pytest.fixture(scope="session")
def rie_opt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python layer, built from this tree and left unpacked: RIE's /opt."""
    spec = importlib.util.spec_from_file_location(
        "layer_build", ROOT / "packages" / "lambda-ext" / "layer" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    base = tmp_path_factory.mktemp("layer")
    build.build_python_layer(base / "dist", tree=base / "opt")
    assert (base / "dist" / "cachecore-lambda-layer.zip").is_file()
    return base / "opt"


@pytest.fixture
def secret_name(secretsmanager, unique) -> str:  # type: ignore[no-untyped-def]
    name = unique("rie")
    secretsmanager.create_secret(Name=name, SecretString=SECRET_STRING)
    return str(name)


@pytest.fixture
def rie_env(moto_url: str, secret_name: str) -> dict[str, str]:
    """RIE's whole environment, which it passes to the extension and function."""
    port, second = free_port(), free_port()
    return {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url,
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "20",
        "CACHECORE_PORT": f"{port},{second}",
        "CACHECORE_TEST_PORT": str(port),
        "CACHECORE_TEST_SECOND_PORT": str(second),
        "CACHECORE_TEST_SECRET": secret_name,
    }


@pytest.fixture
def start_rie(
    rie_path: Path, rie_opt_dir: Path, rie_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., RIE]]:
    """Start RIEs on the layer and env; each is stopped at the end of the test."""
    started: list[RIE] = []

    def start(**env: str) -> RIE:
        rie = RIE(
            rie_opt_dir,
            BOOTSTRAP,
            {**rie_env, **env},
            binary=rie_path,
            log_path=tmp_path / f"rie-{len(started)}.log",
            cwd=tmp_path,
        )
        started.append(rie)
        rie.start()
        return rie

    try:
        yield start
    finally:
        for rie in started:
            rie.close()
        for rie in started:
            print(f"---- {rie.log_path}\n{rie.log[-4000:]}")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_function_reads_through_the_layer_at_init_and_invoke_and_stops_in_time(
    start_rie: Callable[..., RIE], rie_env: dict[str, str]
) -> None:
    rie = start_rie()
    answers = []
    for _ in range(2):
        status, body = rie.invoke({"hello": "world"}, timeout=30)
        assert status == 200, (body, rie.log[-3000:])
        answers.append(json.loads(body))
    ports = [
        int(rie_env[k]) for k in ("CACHECORE_TEST_PORT", "CACHECORE_TEST_SECOND_PORT")
    ]

    for answer in answers:
        for phase in ("init", "invoke"):
            assert answer[phase]["status"] == 200, answer
            assert answer[phase]["SecretString"] == SECRET_STRING, answer
    # The first read of the init fetched it; every read after came from the cache.
    assert answers[0]["init"]["cache"] == "MISS"
    assert [a["invoke"]["cache"] for a in answers] == ["HIT", "HIT"]
    assert all(listening(port) for port in ports)
    assert "registered after" in rie.log

    began = time.monotonic()
    assert rie.terminate(timeout=10) == 0
    took = time.monotonic() - began
    log = rie.log
    assert "SHUTDOWN (SandboxTerminated): stopped after the requests under way" in log
    assert "did not exit after deadline" not in log
    assert took < SHUTDOWN_DEADLINE, f"RIE took {took:.2f}s to exit after SIGTERM"
    assert not any(listening(port) for port in ports)
    ours = [line for line in log.splitlines() if "[cachecore]" in line]
    assert ours
    assert not [line for line in ours if "rie-password" in line or TOKEN in line]


def test_bad_setting_fails_the_init_with_the_variable_named(
    start_rie: Callable[..., RIE],
) -> None:
    rie = start_rie(CACHE_EXTENSION_TTL="ten minutes")

    status, body = rie.invoke(b"{}", timeout=30)

    assert status != 200
    log = rie.log
    assert "CACHE_EXTENSION_TTL must be a Go duration" in log
    assert "Extension.ConfigInvalid" in log


def test_leaving_the_harness_stops_everything_even_on_failure(
    start_rie: Callable[..., RIE], rie_env: dict[str, str]
) -> None:
    port = int(rie_env["CACHECORE_TEST_PORT"])
    rie = start_rie()
    rie.close()  # the one started by the fixture: not needed here
    with pytest.raises(RuntimeError, match="a failing test"):
        with RIE(
            rie.opt_dir,
            BOOTSTRAP,
            rie_env,
            binary=rie.binary,
            log_path=rie.log_path.with_name("rie-failing.log"),
        ) as failing:
            assert failing.invoke(b"{}", timeout=20)[0] == 200
            assert listening(port)
            raise RuntimeError("a failing test")
    assert failing.returncode is not None
    assert not listening(port)
    assert not listening(failing.emulator_port)
    assert not listening(failing.api_port)
