"""A harness for AWS's Lambda Runtime Interface Emulator (aws-lambda-rie).

RIE is the Go program that AWS puts in its Lambda base images to run a function
outside Lambda. It ships, for both architectures, inside the ``aws-sam-cli``
wheel on PyPI as ``samcli/local/rapid/aws-lambda-rie-x86_64`` and
``samcli/local/rapid/aws-lambda-rie-arm64``. :func:`rie_binary` downloads that
wheel once with ``pip download`` into a cache directory, unzips only the
binary and makes it executable; the binary is never committed.

What RIE does (aws-sam-cli 1.170.0, measured on Linux x86_64)
------------------------------------------------------------

Command line: ``aws-lambda-rie [flags] BOOTSTRAP [ARGS...]``. Flags, found in
the binary (``--help`` and ``-h`` print nothing: this build takes them for the
BOOTSTRAP, execs nothing until the first invoke and listens on 0.0.0.0:8080;
so never run it without flags):

* ``--runtime-interface-emulator-address HOST:PORT``: where RIE takes invokes;
  default ``0.0.0.0:8080``, i.e. every interface. Always given here, on a free
  loopback port.
* ``--runtime-api-address HOST:PORT``: the Runtime API and Extensions API the
  function and the extensions call; default ``127.0.0.1:9001``. It can be
  changed, so no network namespace is needed: both ports are free loopback
  ports of the host, and the function and extensions reach anything else on
  the host's loopback (moto, for instance) as they are.
* ``--log-level LEVEL`` (or env ``LOG_LEVEL``): ``info`` by default; ``debug``
  names every Extensions API call and every step of a shutdown.
* ``--enable-init-caching``: not used here.

BOOTSTRAP is exec'd as given (its ARGS become ``_HANDLER``), in RIE's working
directory. Without one RIE falls back to ``/var/runtime/bootstrap``.

Invoke: ``POST http://ADDR/2015-03-31/functions/function/invocations`` with the
event as the body; the answer is the function's response, 200. Invokes are
served one at a time.

When things start: nothing but RIE's two listeners at RIE's start. On the
*first* invoke RIE runs the init phase ("INIT START(type: on-demand)"): it
execs every executable in ``/opt/extensions`` (each in a process group of its
own), waits until each has registered and called ``event/next``, then execs
BOOTSTRAP, waits for its first ``invocation/next``, and only then hands over
the first event. An init failure (an extension exiting, an init error) fails
that invoke, and the next invoke runs the init again.

Extensions API: an extension must register with ``Lambda-Extension-Name``
equal to its file name in ``/opt/extensions``; under any other name RIE takes
it for an internal extension and refuses SHUTDOWN with 403
``Extension.InvalidEventType`` (ShutdownEventNotSupportedForInternalExtension).

Environment: RIE passes its whole environment through, to the extensions and
to the function alike: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` and any custom variable arrive unchanged.
It adds ``AWS_LAMBDA_RUNTIME_API`` (the runtime API address),
``AWS_LAMBDA_FUNCTION_NAME=test_function``, ``AWS_LAMBDA_FUNCTION_VERSION``,
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=3008``, ``AWS_LAMBDA_LOG_GROUP_NAME``,
``AWS_LAMBDA_LOG_STREAM_NAME``, ``AWS_LAMBDA_METADATA_API`` and
``AWS_LAMBDA_METADATA_TOKEN``; the function also gets ``_HANDLER``. It sets
no credentials of its own: whatever the test puts in RIE's environment is what
they see. ``AWS_LAMBDA_FUNCTION_TIMEOUT`` (seconds, 300 by default) bounds an
invoke. The stdout and stderr of the extensions and of the function are copied
into RIE's own output. Without ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``
RIE logs "Starting runtime without AWS_ACCESS_KEY_ID ..." and runs anyway.

Errors: an invoke whose init failed (the function posted ``/runtime/init/error``
or exited) is answered 502 with the error document as the body; the next invoke
runs the init again, extensions included.

SIGTERM: RIE logs "Received signal", stops the runtime (the function process),
then sends SHUTDOWN with ``shutdownReason: "SandboxTerminated"`` (not
``spindown``) and ``deadlineMs`` = the time of the signal + 2000 ms to every
extension registered for it, and waits for them to exit. An extension that
exits promptly lets RIE exit within a few milliseconds of it; one that is
still running at the deadline is SIGKILLed ("did not exit after deadline ...;
Killing it") and RIE exits about 2.0 s after the signal. RIE's exit code is 0
either way. An extension not registered for SHUTDOWN is just killed. SIGTERM
before any invoke: nothing was started and RIE exits at once.

Timings measured here with a minimal extension: RIE listens ~30 ms after exec;
the first invoke (init: the extension's and the function's Python start) takes
~150 ms, a warm invoke ~4 ms; SIGTERM to exit ~60 ms when the extension exits
on SHUTDOWN, ~2.0 s when it does not.

How the harness runs it
-----------------------

``unshare --mount --pid --fork --kill-child=SIGKILL --propagation private``
then, inside, ``mount --bind LAYER /opt`` and exec RIE. The private mount
namespace means the bind mount over ``/opt`` is seen only by RIE and its
children; the host's ``/opt`` is never touched. The PID namespace makes RIE its
init: when RIE dies the kernel kills every process left in it, and
``--kill-child`` kills RIE when ``unshare`` dies, so stopping ``unshare`` and
RIE by their pids stops the extensions and the function too (they sit in
process groups of their own, so a process group kill would miss them). The
network is the host's, with both RIE addresses on free loopback ports, so
several RIEs can run at once.

RIE's environment is exactly the one given, plus ``PATH`` (the directory of
this Python first, so ``#!/usr/bin/env python3`` finds it): nothing of the
host's environment, such as its AWS credentials, leaks into the function.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

SAM_CLI_VERSION = "1.170.0"
HOST = "127.0.0.1"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
SHUTDOWN_DEADLINE = 2.0
"""Seconds RIE gives extensions after SHUTDOWN before it kills them."""

_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_MOUNT_AND_EXEC = 'mount --bind "$1" /opt && shift && exec "$@"'
_PR_SET_PDEATHSIG = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cachecore-tests``, else ``~/.cache/cachecore-tests``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cachecore-tests"


def rie_binary(cache_dir: Path) -> Path:
    """aws-lambda-rie for this machine, from the aws-sam-cli wheel, cached.

    The wheel is fetched once with ``pip download`` into ``cache_dir/wheels``
    and only the binary is unzipped, as ``cache_dir/aws-lambda-rie-VERSION-ARCH``.
    """
    arch = _ARCHES.get(platform.machine().lower())
    if arch is None:
        raise RuntimeError(f"aws-lambda-rie has no build for {platform.machine()}")
    binary = cache_dir / f"aws-lambda-rie-{SAM_CLI_VERSION}-{arch}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    wheels = cache_dir / "wheels"
    wheel = _find_wheel(wheels)
    if wheel is None:
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheels),
                f"aws-sam-cli=={SAM_CLI_VERSION}",
            ],
            check=True,
            timeout=600,
        )
        wheel = _find_wheel(wheels)
        if wheel is None:
            raise RuntimeError(f"pip download left no aws-sam-cli wheel in {wheels}")
    member = f"samcli/local/rapid/aws-lambda-rie-{arch}"
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
        # Unzip beside the target and rename, so a concurrent run never sees
        # half a binary.
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".rie-")
        with os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target)
    os.chmod(partial, 0o755)
    os.replace(partial, binary)
    return binary


def _find_wheel(wheels: Path) -> Path | None:
    found = sorted(wheels.glob(f"aws_sam_cli-{SAM_CLI_VERSION}-*.whl"))
    return found[0] if found else None


@functools.cache
def namespace_available() -> str | None:
    """None if a private mount + PID namespace can bind-mount over /opt here.

    Otherwise the reason, for ``pytest.skip``. The probe runs in a namespace of
    its own, so the host's /opt is never touched.
    """
    if not sys.platform.startswith("linux"):
        return f"needs Linux namespaces, this is {sys.platform}"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if not Path("/opt").is_dir():
        return "/opt does not exist to mount a layer over"
    with tempfile.TemporaryDirectory(prefix="cachecore-ns-") as layer:
        Path(layer, "probe").write_text("ok")
        try:
            probe = subprocess.run(
                [
                    *_unshare_command(),
                    "/bin/sh",
                    "-c",
                    _MOUNT_AND_EXEC,
                    "sh",
                    layer,
                    "/bin/cat",
                    "/opt/probe",
                ],
                capture_output=True,
                timeout=15,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unshare failed: {error}"
    if probe.returncode != 0 or probe.stdout != b"ok":
        said = probe.stderr.decode(errors="replace").strip()
        return f"unshare -m -p + mount --bind over /opt failed here: {said}"
    return None


def _unshare_command() -> list[str]:
    return [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--propagation",
        "private",
        "--",
    ]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _child_by_scan(parent: int) -> int | None:
    """A child of ``parent``, found in /proc (where /proc/PID/.../children is not)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == parent:
                return int(entry.name)
    return None


def _die_with_parent() -> None:
    """In the child before exec: be SIGKILLed if the test process dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class RIE:
    """aws-lambda-rie with a layer at /opt, a bootstrap and an environment.

    Use as a context manager: entering starts it and waits until it takes
    invokes; leaving stops everything it started (RIE, the extensions, the
    function), whatever happened in between. ``terminate`` is the graceful
    stop under test: SIGTERM to RIE, then wait.

    Attributes: ``api_port`` and ``emulator_port`` (loopback ports of the
    Runtime API and of the invoke endpoint), ``url`` (the invoke URL),
    ``log_path`` (RIE's stdout and stderr, which hold the extensions' and the
    function's output too).
    """

    def __init__(
        self,
        opt_dir: Path,
        bootstrap: Path,
        env: Mapping[str, str],
        *,
        binary: Path,
        log_path: Path,
        log_level: str = "debug",
        cwd: Path | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.opt_dir = Path(opt_dir).resolve()
        self.bootstrap = Path(bootstrap).resolve()
        self.env = dict(env)
        self.binary = Path(binary)
        self.log_path = Path(log_path)
        self.log_level = log_level
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.api_port = 0
        self.emulator_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._rie_pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.emulator_port}{INVOKE_PATH}"

    @property
    def log(self) -> str:
        """Everything RIE, the extensions and the function wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def __enter__(self) -> RIE:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start RIE and wait until its invoke endpoint accepts connections.

        Ports are picked free just before; if RIE still loses one to another
        process, it is started again on new ones, three times at most.
        """
        if self._process is not None:
            raise RuntimeError("this RIE was started already")
        for _attempt in range(3):
            self._spawn()
            if self._wait_listening():
                return
            said = self.log
            self.close()
            if "address already in use" not in said:
                break
        raise RuntimeError(
            f"aws-lambda-rie did not start (exit {self.returncode}):\n{said[-3000:]}"
        )

    def _spawn(self) -> None:
        self.api_port = free_port()
        self.emulator_port = free_port()
        while self.emulator_port == self.api_port:
            self.emulator_port = free_port()
        env = dict(self.env)
        path = os.environ.get("PATH", os.defpath)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), path])
        command = [
            *_unshare_command(),
            "/bin/sh",
            "-c",
            _MOUNT_AND_EXEC,
            "sh",
            str(self.opt_dir),
            str(self.binary),
            "--log-level",
            self.log_level,
            "--runtime-api-address",
            f"{HOST}:{self.api_port}",
            "--runtime-interface-emulator-address",
            f"{HOST}:{self.emulator_port}",
            str(self.bootstrap),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._rie_pid = None

    def _wait_listening(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.emulator_port), 0.5):
                    pass
            except OSError:
                time.sleep(0.02)
                continue
            return self._find_rie_pid() is not None
        return False

    def _find_rie_pid(self) -> int | None:
        """RIE's pid on the host: the one child of unshare (the namespace init)."""
        if self._rie_pid is None and self._process is not None:
            pid = self._process.pid
            with contextlib.suppress(OSError, ValueError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
                if children.split():
                    self._rie_pid = int(children.split()[0])
            if self._rie_pid is None:
                self._rie_pid = _child_by_scan(pid)
        return self._rie_pid

    def invoke(
        self, payload: bytes | dict[str, object] | None = None, timeout: float = 30.0
    ) -> tuple[int, bytes]:
        """POST one event to the function; its status and body."""
        if isinstance(payload, dict):
            body = json.dumps(payload).encode()
        else:
            body = payload if payload is not None else b"{}"
        connection = http.client.HTTPConnection(
            HOST, self.emulator_port, timeout=timeout
        )
        try:
            connection.request(
                "POST",
                INVOKE_PATH,
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM to RIE, as Lambda does at the end; wait; its exit code.

        Raises TimeoutError (after killing everything) if RIE has not exited
        within ``timeout`` seconds.
        """
        if self._process is None:
            raise RuntimeError("this RIE was never started")
        if self._process.poll() is None:
            pid = self._find_rie_pid()
            if pid is None:
                raise RuntimeError("RIE's pid inside unshare was not found")
            os.kill(pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.close()
                raise TimeoutError(
                    f"aws-lambda-rie did not exit within {timeout}s of SIGTERM"
                ) from None
        return self._process.returncode

    def close(self) -> None:
        """Stop everything at once, if still running: SIGKILL, by pid."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            pid = self._find_rie_pid()
            if pid is not None:
                # RIE is the init of its PID namespace: the kernel kills the
                # extensions and the function with it, and RIE is reaped (so
                # unshare exits) only once they are all gone.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                # RIE not found or not reaped: --kill-child SIGKILLs it when
                # unshare dies.
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=15)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until ``text`` appears in the log; the log then."""
        deadline = time.monotonic() + timeout
        while True:
            said = self.log
            if text in said:
                return said
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{text!r} not in RIE's log within {timeout}s")
            time.sleep(0.05)
