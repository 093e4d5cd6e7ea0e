"""A Lambda function and an extension under AWS's runtime interface emulator.

RIE runs ``lambda_function/bootstrap`` (a custom runtime) with the layer of the
``rie_opt_dir`` fixture bind-mounted over /opt in a private namespace; see
``lambda_rie`` for how RIE behaves. For now the layer holds a stub extension
(``lambda_stub_extension.py``, installed as ``extensions/cachecore``). To test
the real layer, make ``rie_opt_dir`` return the built layer directory
(``extensions/cachecore`` plus ``cachecore/``) and add to ``rie_env`` what it
needs: ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` from the ``moto_url`` fixture, its
port setting, and a secret made in moto under ``CACHECORE_TEST_SECRET``.
"""

from __future__ import annotations

import json
import os
import shutil
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
BOOTSTRAP = HERE / "lambda_function" / "bootstrap"
STUB = HERE / "lambda_stub_extension.py"
EXTENSION = "cachecore"
REGION = "us-east-1"
TOKEN = "sentinel-token-rie-Hk4"
SECRET_STRING = '{"user": "rie", "password": "rie-password-Zp2"}'

_why_not = namespace_available()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=str(_why_not))


@pytest.fixture(scope="session")
def rie_path() -> Path:
    return rie_binary(default_cache_dir())


@pytest.fixture
def rie_opt_dir(tmp_path: Path) -> Path:
    """The layer RIE sees as /opt: here, the stub as ``extensions/cachecore``."""
    opt = tmp_path / "opt"
    (opt / "extensions").mkdir(parents=True)
    extension = opt / "extensions" / EXTENSION
    shutil.copyfile(STUB, extension)
    extension.chmod(0o755)
    return opt


@pytest.fixture
def rie_env(tmp_path: Path) -> dict[str, str]:
    """RIE's whole environment, which it passes to the extension and function."""
    return {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "20",
        "CACHECORE_TEST_PORT": str(free_port()),
        "CACHECORE_TEST_SECRET": "rie/test-secret",
        "STUB_SECRET_STRING": SECRET_STRING,
        "STUB_ENV_FILE": str(tmp_path / "extension-env.json"),
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


def test_function_reads_the_secret_at_init_and_invoke_and_sigterm_shuts_down(
    start_rie: Callable[..., RIE], rie_env: dict[str, str]
) -> None:
    rie = start_rie()
    for _ in range(2):
        status, body = rie.invoke({"hello": "world"}, timeout=20)
        assert status == 200, (body, rie.log[-3000:])
        answer = json.loads(body)
        for phase in ("init", "invoke"):
            assert answer[phase]["status"] == 200, answer
            assert answer[phase]["SecretString"] == SECRET_STRING, answer
    assert rie.log.count("stub: event INVOKE") == 2
    assert listening(int(rie_env["CACHECORE_TEST_PORT"]))

    began = time.monotonic()
    assert rie.terminate(timeout=10) == 0
    took = time.monotonic() - began
    log = rie.log
    assert "stub: shutdown reason=SandboxTerminated deadline=" in log, log[-3000:]
    assert "stub: exit 0" in log, log[-3000:]
    assert "did not exit after deadline" not in log
    assert took < SHUTDOWN_DEADLINE, f"RIE took {took:.2f}s to exit after SIGTERM"
    assert not listening(int(rie_env["CACHECORE_TEST_PORT"]))


def test_extensions_start_at_the_first_invoke_with_the_env_given(
    start_rie: Callable[..., RIE], rie_env: dict[str, str]
) -> None:
    env_file = Path(rie_env["STUB_ENV_FILE"])
    rie = start_rie(CACHECORE_TEST_CUSTOM="custom-value")
    time.sleep(0.3)
    assert not env_file.exists(), "RIE ran the extension before any invoke"
    assert "stub: started" not in rie.log

    status, body = rie.invoke(b"{}", timeout=20)
    assert status == 200, body
    seen = json.loads(env_file.read_text())
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "CACHECORE_TEST_PORT",
    ):
        assert seen[name] == rie_env[name], name
    assert seen["CACHECORE_TEST_CUSTOM"] == "custom-value"
    assert seen["AWS_LAMBDA_RUNTIME_API"] == f"127.0.0.1:{rie.api_port}"
    assert "_HANDLER" not in seen
    assert rie.terminate(timeout=10) == 0


def test_an_extension_that_overstays_shutdown_is_killed_at_the_deadline(
    start_rie: Callable[..., RIE],
) -> None:
    rie = start_rie(STUB_SHUTDOWN_DELAY="10")
    assert rie.invoke(b"{}", timeout=20)[0] == 200

    began = time.monotonic()
    assert rie.terminate(timeout=10) == 0
    took = time.monotonic() - began
    log = rie.log
    assert "stub: shutdown reason=SandboxTerminated" in log
    assert "stub: exit 0" not in log
    assert f"the agent extension-{EXTENSION}" in log
    assert "did not exit after deadline" in log
    assert SHUTDOWN_DEADLINE - 0.2 < took < SHUTDOWN_DEADLINE + 2, took


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
