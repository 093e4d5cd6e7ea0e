"""Build the Lambda layer for Python runtimes: ``cachecore-lambda-layer.zip``.

    python packages/lambda-ext/layer/build.py --out dist

The zip, unpacked by Lambda into ``/opt``, holds:

- ``extensions/cachecore``: the launcher Lambda starts at init (its file name is
  the extension's name), a POSIX shell script that finds the runtime's Python;
- ``cachecore/main.py``, which puts ``cachecore/lib`` first on ``sys.path`` and runs
  the extension;
- ``cachecore/lib``: cachecore-lambda, cachecore-server and cachecore-secrets with
  their dependencies (Falcon, waitress, prometheus_client, botocore and what
  botocore needs), all pure Python, so one layer serves every Python runtime
  from 3.11 on. gunicorn, a
  dependency of the sidecar only, is left out, and so are botocore's models of
  every service but Secrets Manager, SSM and STS.

``/opt`` is read-only in Lambda, so Python could not cache what it compiles: the
modules are compiled here, for each Python from 3.11 to 3.13 found on this machine
(``unchecked-hash`` pyc files, which need no source timestamps). The libraries sit
in ``cachecore/``, not ``python/``, so that they never shadow the function's own.
Everything is downloaded from PyPI by pip; nothing but the standard library runs
here.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

__all__ = ["build_python_layer", "find_pythons", "main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
OUR_PACKAGES = ("packages/cachecore", "packages/server-falcon", "packages/lambda-ext")
#: The services whose models botocore needs here; the models of the other 400 or
#: so (28 MB of the 30 MB of botocore) are left out of the layer. STS is kept for
#: role credentials.
SERVICES = ("secretsmanager", "ssm", "sts")
#: Third-party distributions the extension imports, all pure Python.
DEPENDENCIES = (
    "falcon>=4.0",
    "waitress>=3.0,<4",
    "botocore>=1.34.63",
    "prometheus_client>=0.20",
)
LAYER_NAME = "cachecore-lambda-layer.zip"
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
#: A fixed time for every entry: the zip says nothing of when it was built.
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)

LAUNCHER = """\
#!/bin/sh
# cachecore's Lambda extension (Python runtimes). Lambda starts every executable
# in /opt/extensions during init; this file's name is the extension's name.
layer=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
for python in "${CACHECORE_PYTHON:-}" /var/lang/bin/python3 python3; do
    if [ -n "$python" ] && command -v "$python" >/dev/null 2>&1; then
        # -I -S: no PYTHON* variable, no site-packages, no sitecustomize: the
        # function's packages and settings stay out of the extension.
        exec "$python" -I -S "$layer/cachecore/main.py" "$@"
    fi
done
echo "[cachecore] ERROR no python3 found: this layer is for Python runtimes;" \\
     "use the executable layer on other runtimes" >&2
exit 1
"""

MAIN = '''\
"""Run cachecore's Lambda extension from the libraries beside this file."""

import os
import signal
import sys

# Until the extension has its own handlers, a stop signal finds nothing to drain.
for _signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signum, lambda signum, frame: os._exit(0))

if sys.version_info < (3, 11):
    sys.stderr.write(
        "[cachecore] ERROR the extension needs Python 3.11 or newer, this runtime "
        "has %d.%d: use a newer runtime or the executable layer\\n"
        % sys.version_info[:2]
    )
    sys.exit(1)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from cachecore_lambda._runner import run  # noqa: E402

run()
'''


def find_pythons() -> dict[str, str]:
    """Interpreters of ``PYTHON_VERSIONS`` on this machine, by version."""
    found: dict[str, str] = {}
    candidates: list[str] = [sys.executable]
    for version in PYTHON_VERSIONS:
        on_path = shutil.which(f"python{version}")
        if on_path:
            candidates.append(on_path)
        pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
        candidates += sorted(glob.glob(f"{pyenv}/versions/{version}*/bin/python3"))
    for candidate in candidates:
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        version = done.stdout.strip()
        if version in PYTHON_VERSIONS:
            found.setdefault(version, candidate)
    return found


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
    )


def _install(lib: Path, scratch: Path) -> None:
    wheels = scratch / "wheels"
    ours = [str(ROOT / package) for package in OUR_PACKAGES]
    _pip("wheel", "--no-deps", "-w", str(wheels), *ours)
    # Pure-Python wheels only, whatever this machine is: the layer runs on any
    # Python 3.11+ Lambda runtime, x86_64 or arm64.
    _pip(
        "download",
        "-d",
        str(wheels),
        "--only-binary=:all:",
        "--platform",
        "any",
        "--implementation",
        "py",
        "--abi",
        "none",
        "--python-version",
        "3.11",
        *DEPENDENCIES,
    )
    _pip(
        "install",
        "--no-deps",
        "--no-compile",
        "--target",
        str(lib),
        *(str(w) for w in sorted(wheels.glob("*.whl"))),
    )
    for junk in lib.glob("*.dist-info"):
        # Keep the licences and the metadata (small); drop the install records,
        # which name paths of this machine.
        for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            (junk / name).unlink(missing_ok=True)
    shutil.rmtree(lib / "bin", ignore_errors=True)
    data = lib / "botocore" / "data"
    for service in data.iterdir():
        if service.is_dir() and service.name not in SERVICES:
            shutil.rmtree(service)


def _compile(lib: Path, pythons: dict[str, str]) -> None:
    for python in pythons.values():
        subprocess.run(
            [
                python,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                # The path compiled into each file is where Lambda puts it, not
                # this machine's temporary one.
                "-s",
                str(lib),
                "-p",
                "/opt/cachecore/lib",
                str(lib),
            ],
            check=True,
        )


def _zip(tree: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tree.rglob("*")):
            if path.is_dir():
                continue
            info = zipfile.ZipInfo(str(path.relative_to(tree)), _ZIP_TIME)
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(target)


def build_python_layer(out_dir: Path, *, tree: Path | None = None) -> Path:
    """Build the layer zip into ``out_dir``; returns its path.

    ``tree``, when given, is where the unpacked layer is left (it must not exist),
    so that tests can mount it as ``/opt`` without unzipping.
    """
    with tempfile.TemporaryDirectory(prefix="cachecore-layer-") as scratch_name:
        scratch = Path(scratch_name)
        opt = tree if tree is not None else scratch / "opt"
        (opt / "extensions").mkdir(parents=True)
        launcher = opt / "extensions" / "cachecore"
        launcher.write_text(LAUNCHER)
        launcher.chmod(0o755)
        home = opt / "cachecore"
        lib = home / "lib"
        lib.mkdir(parents=True)
        (home / "main.py").write_text(MAIN)
        _install(lib, scratch)
        pythons = find_pythons()
        _compile(lib, pythons)
        (home / "BUILD.txt").write_text(
            "cachecore Lambda layer for Python runtimes\n"
            f"modules compiled for Python {', '.join(sorted(pythons))}\n"
        )
        target = Path(out_dir) / LAYER_NAME
        _zip(opt, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--out DIR`` (default ``dist``), ``--tree DIR`` to keep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), type=Path)
    parser.add_argument("--tree", type=Path, help="also leave the unpacked layer here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    target = build_python_layer(args.out, tree=args.tree)
    size = target.stat().st_size
    print(f"{target}: {size / 1e6:.1f} MB, built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
