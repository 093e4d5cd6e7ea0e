"""Build the cachecore Lambda extension as a self-contained executable layer.

The layer is for functions on non-Python runtimes (``provided.al2023``, and older
glibc hosts such as Amazon Linux 2): no Python is needed on the host. The procedure,
from a clean clone, as root on a Debian-like machine:

1. A Debian bullseye (glibc 2.31) root file system made with ``debootstrap`` from
   Debian's archive, with the build tools, kept as a tarball in the cache.
2. CPython 3.11 built from Debian's ``python3.11`` source package (the upstream
   tarball plus Debian's bug and security fixes, without Debian's layout patches),
   inside that root, against bullseye's OpenSSL 1.1.1, libffi, zlib, expat...; a
   header pins the few libc symbols that glibc >= 2.27 versioned anew (``fcntl``,
   ``exp``, ``log``, ``pow``) to their old versions and configure is told not to
   use a few newer functions, so the result needs at most glibc 2.26 (Amazon Linux
   2; ``EXE.md`` has the numbers). Kept as a tarball in the cache.
3. In a fresh virtual environment of that Python: the repository's packages
   (cachecore, server-falcon, lambda-ext) and PyInstaller, from PyPI; then
   PyInstaller builds the entry point into a one-dir bundle (or one file).
4. The executable is run once in the build root with its Python removed (a glibc
   2.31 userland with no Python), and must print and exit 0.
5. ``OUT/cachecore-lambda-exe-layer.zip``: ``extensions/cachecore`` (0755) and, for
   a one-dir build, the bundle in ``cachecore-exe/``; the glibc floor of every ELF
   in it is measured and printed, and the build fails above ``MAX_GLIBC``.

Run: ``python packages/lambda-ext/layer/build_exe.py --out DIR [--entry MODULE:FUNC]``.
Only the standard library is used. Every command in the build root runs in a
private mount namespace (``unshare --mount``), so its mounts go away with it; the
root itself is a temporary directory under /tmp, removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SUITE = "bullseye"
MIRROR = "http://deb.debian.org/debian"
SOURCE_SUITE = "bookworm"  # the suite whose python3.11 source package is built
SOURCES_LIST = f"""\
deb {MIRROR} {SUITE} main
deb {MIRROR} {SUITE}-updates main
deb http://deb.debian.org/debian-security {SUITE}-security main
deb-src {MIRROR} {SOURCE_SUITE} main
"""
BUILD_PACKAGES = (
    "build-essential",
    "ca-certificates",
    "libbz2-dev",
    "libexpat1-dev",
    "libffi-dev",
    "liblzma-dev",
    "libssl-dev",
    "uuid-dev",
    "zlib1g-dev",
    "xz-utils",
    "binutils",
)
PREFIX = "/opt/py311"
# Debian's patches before this one change the install layout (multiarch, dist-
# packages, ...); this one and those after it are upstream bug and security fixes.
FIRST_UPSTREAM_PATCH = "shutdown-deadlock.diff"
PYINSTALLER = "pyinstaller==6.22.3"
PROJECT_PACKAGES = ("cachecore", "server-falcon", "lambda-ext")
DEFAULT_ENTRY = "cachecore_lambda._runner:run"
DEFAULT_SERVICES = ("secretsmanager", "ssm", "sts")
LAYER_ZIP = "cachecore-lambda-exe-layer.zip"
# Libc symbols that glibc 2.27..2.31 versioned anew and that CPython calls: each
# reference is bound to the version that x86_64's glibc has had since 2.2.5. The old
# versions stay in every later glibc. ``fcntl64`` is what <fcntl.h> turns ``fcntl``
# into since 2.28; on x86_64 ``fcntl`` always took 64-bit offsets, so the two are
# the same call. The exp/log/pow of 2.29 are faster and no longer set errno through
# the SVID error wrapper; CPython checks errno and the result itself either way.
SYMVER_PINS = {
    "fcntl64": "fcntl@GLIBC_2.2.5",
    "exp": "exp@GLIBC_2.2.5",
    "exp2": "exp2@GLIBC_2.2.5",
    "log": "log@GLIBC_2.2.5",
    "log2": "log2@GLIBC_2.2.5",
    "pow": "pow@GLIBC_2.2.5",
}
# Functions newer than glibc 2.26 (or 2.24) that CPython uses only when configure
# finds them; answered "no", CPython falls back on what older glibc has (getrandom
# and sem_clockwait: the syscall and sem_timedwait) or leaves the os.* function out
# (os.copy_file_range, os.memfd_create, os.preadv/pwritev's RWF_* flags).
CONFIGURE_OVERRIDES = {
    "ac_cv_func_copy_file_range": "no",
    "ac_cv_func_memfd_create": "no",
    "ac_cv_func_getrandom": "no",
    "ac_cv_func_explicit_bzero": "no",
    "ac_cv_func_preadv2": "no",
    "ac_cv_func_pwritev2": "no",
    "ac_cv_func_sem_clockwait": "no",
}
# The build fails if any ELF of the layer needs a newer glibc: Amazon Linux 2's.
MAX_GLIBC = (2, 26)
GLIBC_PIN_HEADER = "/opt/glibc-pins.h"
HOST_CA_BUNDLE = "/etc/ssl/certs/build-host-ca.crt"

WRAPPER = """\
#!/bin/sh
# The cachecore Lambda extension: the PyInstaller bundle is in /opt/cachecore-exe.
exec "${0%/*}/../cachecore-exe/cachecore" "$@"
"""

# -- the glibc floor of ELF files ---------------------------------------------------

_SHT_GNU_VERNEED = 0x6FFFFFFE
_SHT_DYNAMIC = 6
_DT_NEEDED = 1
# What an executable may take from the host: glibc's own libraries (PyInstaller
# never bundles them). Anything else an ELF of the layer needs must be in it.
HOST_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libutil.so.1",
        "libcrypt.so.1",
        "ld-linux-x86-64.so.2",
    }
)
_ELF_MAGIC = b"\x7fELF"


def is_elf(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts with the ELF magic."""
    try:
        with path.open("rb") as file:
            return file.read(4) == _ELF_MAGIC
    except OSError:
        return False


def _elf_sections(path: Path) -> tuple[bytes, list[tuple[int, ...]]]:
    """The bytes of a 64-bit little-endian ELF file and its section headers.

    Other files raise ``ValueError``.
    """
    data = path.read_bytes()
    if data[:4] != _ELF_MAGIC:
        raise ValueError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    header = struct.unpack_from("<16sHHIQQQIHHHHHH", data, 0)
    shoff, shentsize, shnum = header[6], header[11], header[12]
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + index * shentsize)
        for index in range(shnum if shoff else 0)
    ]
    return data, sections


def version_requirements(path: Path) -> dict[str, set[str]]:
    """The symbol versions an ELF file needs, by library: ``{"libc.so.6": {...}}``.

    Read from its ``.gnu.version_r`` section (the table the dynamic loader checks:
    a missing version is the "version `GLIBC_2.34' not found" error). Only 64-bit
    little-endian files (x86_64, aarch64) are read; others raise ``ValueError``.
    """
    data, sections = _elf_sections(path)
    needs: dict[str, set[str]] = {}
    for section in sections:
        if section[1] != _SHT_GNU_VERNEED:
            continue
        offset, count = section[4], section[7]
        strings = sections[section[6]][4]
        for _ in range(count):
            _, aux_count, file_name, aux, next_need = struct.unpack_from(
                "<HHIII", data, offset
            )
            library = _c_string(data, strings + file_name)
            entry = offset + aux
            for _ in range(aux_count):
                _, _, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                needs.setdefault(library, set()).add(_c_string(data, strings + name))
                entry += next_aux
            if not next_need:
                break
            offset += next_need
    return needs


def needed_libraries(path: Path) -> list[str]:
    """The ``DT_NEEDED`` entries of an ELF file: the libraries it links against."""
    data, sections = _elf_sections(path)
    needed: list[str] = []
    for section in sections:
        if section[1] != _SHT_DYNAMIC:
            continue
        strings = sections[section[6]][4]
        for offset in range(section[4], section[4] + section[5], 16):
            tag, value = struct.unpack_from("<qQ", data, offset)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                needed.append(_c_string(data, strings + value))
    return needed


def _c_string(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\0", offset)].decode("ascii", "replace")


def _glibc_version(name: str) -> tuple[int, ...] | None:
    """``(2, 34)`` for ``"GLIBC_2.34"``; ``None`` for other names (GLIBC_PRIVATE)."""
    prefix, _, number = name.partition("_")
    if prefix != "GLIBC" or not number.replace(".", "").isdigit():
        return None
    return tuple(int(part) for part in number.split("."))


def glibc_floor_of_file(path: Path) -> tuple[int, ...]:
    """The highest ``GLIBC_x.y`` version ``path`` needs; ``()`` if none."""
    return _glibc_floor_of(version_requirements(path))


def _glibc_floor_of(requirements: dict[str, set[str]]) -> tuple[int, ...]:
    versions = [
        version
        for names in requirements.values()
        for name in names
        if (version := _glibc_version(name)) is not None
    ]
    return max(versions, default=())


@dataclass(frozen=True)
class GlibcFloor:
    """The glibc floor of a tree of ELF files: the newest glibc version any needs."""

    floor: tuple[int, ...]
    by_file: dict[str, tuple[int, ...]]
    private: tuple[str, ...]  # files that need GLIBC_PRIVATE (tied to one glibc build)
    unbundled: dict[str, tuple[str, ...]]  # library -> files needing it, not shipped

    @property
    def text(self) -> str:
        """``"2.17"``; ``"none"`` when no file needs a versioned glibc symbol."""
        return format_version(self.floor)

    def merge(self, other: GlibcFloor) -> GlibcFloor:
        """The floor of both trees (file names of ``other`` win on a clash)."""
        unbundled = {**self.unbundled, **other.unbundled}
        return GlibcFloor(
            max(self.floor, other.floor),
            {**self.by_file, **other.by_file},
            self.private + other.private,
            unbundled,
        )

    def table(self) -> str:
        """One line per file, newest requirement first: ``2.17  lib/libpython...``."""
        rows = sorted(self.by_file.items(), key=lambda item: (item[1], item[0]))
        return "\n".join(f"{format_version(v):>6}  {name}" for name, v in rows[::-1])


def format_version(version: tuple[int, ...]) -> str:
    """``"2.34"`` for ``(2, 34)``; ``"none"`` for ``()``."""
    return ".".join(map(str, version)) if version else "none"


def glibc_floor(directory: Path) -> GlibcFloor:
    """The glibc floor of every ELF file under ``directory`` (or of one file).

    Symbolic links are not followed (their targets are counted where they are).
    """
    files = [directory] if directory.is_file() else sorted(_walk(directory))
    by_file: dict[str, tuple[int, ...]] = {}
    private: list[str] = []
    needs: dict[str, list[str]] = {}
    shipped = {path.name for path in files} | {
        path.name for path in (directory.rglob("*") if directory.is_dir() else ())
    }
    for path in files:
        if not is_elf(path):
            continue
        name = path.name if path == directory else str(path.relative_to(directory))
        requirements = version_requirements(path)
        by_file[name] = _glibc_floor_of(requirements)
        if any("GLIBC_PRIVATE" in names for names in requirements.values()):
            private.append(name)
        for library in needed_libraries(path):
            if library not in shipped and library not in HOST_LIBRARIES:
                needs.setdefault(library, []).append(name)
    return GlibcFloor(
        max(by_file.values(), default=()),
        by_file,
        tuple(private),
        {library: tuple(names) for library, names in sorted(needs.items())},
    )


def _walk(directory: Path) -> Iterator[Path]:
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                yield path


# -- the build root -----------------------------------------------------------------


def log(message: str) -> None:
    """One progress line on stderr, with the seconds since the build started."""
    print(f"[build_exe {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr)


_STARTED = time.monotonic()


def run(command: Sequence[str], **kwargs: object) -> None:
    """Run ``command`` on this machine; raise ``CalledProcessError`` if it fails."""
    subprocess.run(list(command), check=True, **kwargs)  # type: ignore[call-overload]


class BuildRoot:
    """A Debian root file system under /tmp in which commands run as root.

    Each command runs in a new private mount namespace with /proc and the pip
    cache mounted, so no mount outlives the command or shows outside it.
    """

    def __init__(self, path: Path, pip_cache: Path) -> None:
        self.path = path
        self.pip_cache = pip_cache

    def run(self, script: str, *, quiet_log: Path | None = None) -> None:
        """Run the shell ``script`` in the root (``set -eu``), output to a log."""
        self.pip_cache.mkdir(parents=True, exist_ok=True)
        (self.path / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
        enter = (
            'mount -t proc proc "$1/proc" && '
            'mount --bind "$2" "$1/root/.cache/pip" && '
            'exec chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 '
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "
            "DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 "
            + " ".join(
                f"{name}={shlex.quote(value)}" for name, value in self._pip_env()
            )
            + ' /bin/sh -euc "$3"'
        )
        command = [
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", enter, "enter",
            str(self.path), str(self.pip_cache), script,
        ]  # fmt: skip
        if quiet_log is None:
            run(command)
            return
        with quiet_log.open("w") as output:
            result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT)
        if result.returncode:
            tail = quiet_log.read_text(errors="replace").splitlines()[-30:]
            raise SystemExit(
                f"failed in the build root (log: {quiet_log}):\n" + "\n".join(tail)
            )

    def _pip_env(self) -> list[tuple[str, str]]:
        """The settings of pip in the root: the host's CA bundle and index, if any."""
        env = [
            (name, os.environ[name])
            for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
            if os.environ.get(name, "").startswith(("https://", "http://"))
        ]
        if (self.path / HOST_CA_BUNDLE.lstrip("/")).is_file():
            env.append(("PIP_CERT", HOST_CA_BUNDLE))
        return env


@contextmanager
def build_root(cache: Path, *, keep: bool) -> Iterator[BuildRoot]:
    """A fresh build root from the cached bullseye tarball (made on first use)."""
    tarball = cache / f"rootfs-{SUITE}-{_digest(BUILD_PACKAGES)}.tar"
    path = Path(tempfile.mkdtemp(prefix="cachecore-exe-root-", dir="/tmp"))
    root = BuildRoot(path, cache / "pip")
    try:
        if tarball.exists():
            log(f"build root: unpacking {tarball.name} into {path}")
            run(["tar", "-xpf", str(tarball), "--numeric-owner", "-C", str(path)])
        else:
            _debootstrap(root, cache, tarball)
        shutil.copy2("/etc/resolv.conf", path / "etc/resolv.conf")
        # pip in the root trusts what this machine trusts (a proxy's CA, say).
        if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
            shutil.copy2(
                "/etc/ssl/certs/ca-certificates.crt",
                path / HOST_CA_BUNDLE.lstrip("/"),
            )
        yield root
    finally:
        if keep:
            log(f"build root kept at {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def _debootstrap(root: BuildRoot, cache: Path, tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        log("installing debootstrap with apt-get")
        run(["apt-get", "install", "-y", "-q", "debootstrap"])
    log(f"build root: debootstrap {SUITE} into {root.path} (about a minute)")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(
        [
            "debootstrap", "--variant=minbase", f"--cache-dir={debs}",
            SUITE, str(root.path), MIRROR,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    (root.path / "etc/apt/sources.list").write_text(SOURCES_LIST)
    shutil.copy2("/etc/resolv.conf", root.path / "etc/resolv.conf")
    log("build root: apt-get install the build tools")
    root.run(
        "apt-get update -q && apt-get install -y -q --no-install-recommends "
        + " ".join(BUILD_PACKAGES)
        + " && apt-get clean && rm -rf /var/lib/apt/lists/*",
        quiet_log=cache / "apt.log",
    )
    partial = tarball.with_suffix(".partial")
    run(["tar", "-cpf", str(partial), "--numeric-owner", "-C", str(root.path), "."])
    partial.rename(tarball)


def _digest(parts: Iterable[object]) -> str:
    return hashlib.sha256(repr(list(parts)).encode()).hexdigest()[:10]


# -- CPython ------------------------------------------------------------------------


def _pin_header() -> str:
    lines = ["/* Pin libc symbols to versions old glibc has (build_exe.py). */"]
    lines += [
        f'__asm__(".symver {name},{target}");'
        for name, target in sorted(SYMVER_PINS.items())
    ]
    return "\n".join(lines) + "\n"


def _python_script(jobs: int) -> str:
    overrides = " ".join(f"{k}={v}" for k, v in sorted(CONFIGURE_OVERRIDES.items()))
    return f"""
cd /src
rm -rf build && mkdir build && cd build
tar -xf "$(ls ../python3.11_*.orig.tar.* | grep -v "\\.asc$" | head -n 1)"
tar -xf ../python3.11_*.debian.tar.xz
cd Python-3.11.*
sed -n '/^{FIRST_UPSTREAM_PATCH}$/,$p' ../debian/patches/series | grep -v '^#' |
while read -r patch; do patch -p1 -N -s < "../debian/patches/$patch"; done
# A security fix includes an internal header; the module must say it is core.
if ! grep -q Py_BUILD_CORE_MODULE Modules/pyexpat.c; then
  sed -i '1i #define Py_BUILD_CORE_MODULE 1' Modules/pyexpat.c
fi
./configure --prefix={PREFIX} --enable-shared --with-system-expat \\
  --with-ensurepip=install {overrides} \\
  CFLAGS='-include {GLIBC_PIN_HEADER}' LDFLAGS='-Wl,-rpath,{PREFIX}/lib' >configure.log
make -j{jobs} >make.log 2>&1
make install >install.log 2>&1
{PREFIX}/bin/python3.11 -c 'import ssl, ctypes, lzma, bz2, zlib, pyexpat, _uuid'
rm -rf {PREFIX}/lib/python3.11/test
"""


def ensure_python(root: BuildRoot, cache: Path, jobs: int) -> str:
    """CPython 3.11 in ``PREFIX`` of ``root``: from the cache, or built and cached.

    Returns the Debian version of the source it was built from.
    """
    sources = cache / "python-src"
    sources.mkdir(parents=True, exist_ok=True)
    (root.path / "src").mkdir(exist_ok=True)
    if not list(sources.glob("python3.11_*.dsc")):
        log(f"CPython: apt-get source python3.11 ({SOURCE_SUITE})")
        root.run(
            "apt-get update -q && cd /src && apt-get source --download-only python3.11",
            quiet_log=cache / "source.log",
        )
        for path in (root.path / "src").glob("python3.11_*"):
            shutil.copy2(path, sources / path.name)
    (root.path / GLIBC_PIN_HEADER.lstrip("/")).write_text(_pin_header())
    dsc = max(sources.glob("python3.11_*.dsc"))
    version = dsc.stem.split("_", 1)[1]
    key = _digest([version, SYMVER_PINS, CONFIGURE_OVERRIDES, _python_script(0)])
    tarball = cache / f"python-{version}-{SUITE}-{key}.tar.gz"
    if tarball.exists():
        log(f"CPython: {tarball.name} from the cache")
        run(["tar", "-xzf", str(tarball), "-C", str(root.path)])
        return version
    for path in sources.iterdir():
        shutil.copy2(path, root.path / "src" / path.name)
    log(f"CPython: building {version} in the build root (about 2-3 minutes)")
    root.run(_python_script(jobs), quiet_log=cache / "python-build.log")
    partial = tarball.with_suffix(".partial")
    prefix = PREFIX.lstrip("/")
    run(["tar", "-czf", str(partial), "-C", str(root.path), prefix])
    partial.rename(tarball)
    return version


# -- the executable -----------------------------------------------------------------


def _copy_packages(root: BuildRoot) -> None:
    ignore = shutil.ignore_patterns(
        ".venv", "__pycache__", "*.egg-info", "build", "dist", "tests", ".nox"
    )
    for name in PROJECT_PACKAGES:
        shutil.copytree(
            REPO / "packages" / name, root.path / "work/packages" / name, ignore=ignore
        )


def _app_script(entry: str, onefile: bool, services: Sequence[str]) -> str:
    module, _, function = entry.partition(":")
    packages = " ".join(f"/work/packages/{name}" for name in PROJECT_PACKAGES)
    keep = " ".join(services)
    prune = (
        ""
        if not services
        else f"""
py=/work/venv/bin/python
data=$($py -c 'import botocore, os; print(os.path.dirname(botocore.__file__))')/data
for service in "$data"/*/; do
  case " {keep} " in *" $(basename "$service") "*) ;; *) rm -rf "$service" ;; esac
done
"""
    )
    return f"""
cd /work
{PREFIX}/bin/python3.11 -m venv /work/venv
# PyInstaller from its sdist: the bootloader is compiled here, against this glibc and
# with zlib linked in (the prebuilt one loads the host's libz.so.1 before anything).
PYI_STATIC_ZLIB=1 /work/venv/bin/pip install -q --no-binary pyinstaller \\
  {packages} '{PYINSTALLER}'
{prune}
cat > /work/launch.py <<'EOF'
import os
import signal
import sys

# Until the extension has its own handlers, a stop signal finds nothing to drain.
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda signum, frame: os._exit(0))

from {module} import {function or "main"} as entry  # noqa: E402

sys.exit(entry())
EOF
/work/venv/bin/pyinstaller --noconfirm --clean --log-level WARN \\
  {"--onefile" if onefile else "--onedir"} --strip --name cachecore \\
  --collect-data cachecore_server --copy-metadata cachecore-lambda \\
  --exclude-module tkinter \\
  --distpath /work/dist --workpath /work/pyi --specpath /work /work/launch.py
{_EXTRACT if onefile else ""}"""


# For a one-file build: the files it unpacks at each start, to measure them too.
_EXTRACT = """
/work/venv/bin/python - <<'EOF'
import os
from PyInstaller.archive.readers import CArchiveReader

archive = CArchiveReader("/work/dist/cachecore")
for name in archive.toc:
    target = os.path.join("/work/onefile-contents", name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as file:
        file.write(archive.extract(name) or b"")
EOF
"""


def build(
    out: Path,
    entry: str,
    *,
    onefile: bool,
    services: Sequence[str],
    cache: Path,
    jobs: int,
    keep: bool,
) -> GlibcFloor:
    """Build the layer zip into ``out``; return the glibc floor of its contents."""
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    with build_root(cache, keep=keep) as root:
        version = ensure_python(root, cache, jobs)
        _copy_packages(root)
        log(f"PyInstaller: {entry} ({'one file' if onefile else 'one dir'})")
        root.run(_app_script(entry, onefile, services), quiet_log=cache / "app.log")
        staging = out / "cachecore-lambda-exe-layer"  # unpacked, as in /opt
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "extensions").mkdir(parents=True)
        dist = root.path / "work/dist"
        if onefile:
            shutil.copy2(dist / "cachecore", staging / "extensions/cachecore")
            contents = out / "onefile-contents"
            shutil.rmtree(contents, ignore_errors=True)
            shutil.copytree(root.path / "work/onefile-contents", contents)
        else:
            bundle = staging / "cachecore-exe"
            shutil.copytree(dist / "cachecore", bundle, symlinks=True)
            (staging / "extensions/cachecore").write_text(WRAPPER)
        (staging / "extensions/cachecore").chmod(0o755)
        smoke_test(root, staging)
    floor = glibc_floor(out / "onefile-contents" if onefile else staging)
    if onefile:
        floor = floor.merge(glibc_floor(staging))
    bootloader = staging / ("extensions" if onefile else "cachecore-exe") / "cachecore"
    from_host = sorted(set(needed_libraries(bootloader)) - HOST_LIBRARIES)
    if floor.floor > MAX_GLIBC or floor.private or floor.unbundled or from_host:
        print(floor.table(), file=sys.stderr)
        raise SystemExit(
            f"the layer needs glibc {floor.text} (at most {format_version(MAX_GLIBC)})"
            f", GLIBC_PRIVATE in {floor.private}, libraries it lacks:"
            f" {floor.unbundled}, or its executable needs {from_host} of the host"
        )
    write_zip(staging, out / LAYER_ZIP)
    log(f"built from Debian python3.11 {version}; layer: {out / LAYER_ZIP}")
    return floor


def smoke_test(root: BuildRoot, staging: Path) -> None:
    """Run the layer's ``extensions/cachecore`` in ``root`` with no Python there.

    The layer goes to /opt of the root as Lambda lays it out; the root's Python and
    virtual environment are removed first, so a bundle that still used them fails.
    """
    target = root.path / "opt"
    for name in ("extensions", "cachecore-exe"):
        if (staging / name).exists():
            shutil.copytree(staging / name, target / name, symlinks=True)
    log("smoke test: /opt/extensions/cachecore in the build root, without Python")
    log_path = Path(tempfile.mkstemp(prefix="cachecore-exe-smoke-", suffix=".log")[1])
    root.run(
        f"rm -rf {PREFIX} /work/venv /usr/bin/python3* && "
        "/opt/extensions/cachecore --version",
        quiet_log=log_path,
    )
    for line in log_path.read_text().splitlines():
        log(f"smoke test: {line}")
    log_path.unlink()


def write_zip(directory: Path, target: Path) -> None:
    """Zip ``directory`` into ``target`` with each file's mode (0755 executables).

    Symbolic links are stored as links (the way ``zip -y`` does).
    """
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(_all_paths(directory)):
            name = path.relative_to(directory).as_posix()
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix, so that external_attr holds the mode
            mode = path.lstat().st_mode
            info.external_attr = (stat.S_IMODE(mode) | stat.S_IFMT(mode)) << 16
            if path.is_symlink():
                zf.writestr(info, os.readlink(path))
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    partial.rename(target)


def _all_paths(directory: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(directory):
        for name in names + [d for d in dirs if Path(root, d).is_symlink()]:
            yield Path(root, name)


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/cachecore-lambda-exe`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cachecore-lambda-exe"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build the layer, print the glibc floor per file and in all."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--entry", default=DEFAULT_ENTRY, help="MODULE:FUNC")
    parser.add_argument("--onefile", action="store_true", help="one file, not one dir")
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument(
        "--botocore-services",
        default=",".join(DEFAULT_SERVICES),
        help="botocore service models to keep, comma-separated, or 'all'",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep-root", action="store_true", help="keep the build root")
    parser.add_argument(
        "--floor-only", type=Path, metavar="DIR", help="only measure DIR's glibc floor"
    )
    args = parser.parse_args(argv)
    if args.floor_only is not None:
        floor = glibc_floor(args.floor_only)
    else:
        if os.geteuid() != 0:
            parser.error("the build uses debootstrap and chroot: run it as root")
        if os.uname().machine != "x86_64":
            parser.error("only x86_64 is done (the symbol versions pinned are its)")
        services = [] if args.botocore_services == "all" else [
            name for name in args.botocore_services.split(",") if name
        ]  # fmt: skip
        floor = build(
            args.out.resolve(),
            args.entry,
            onefile=args.onefile,
            services=services,
            cache=args.cache.resolve(),
            jobs=args.jobs,
            keep=args.keep_root,
        )
    print(floor.table())
    if floor.private:
        print("needs GLIBC_PRIVATE: " + ", ".join(floor.private))
    print(f"glibc floor: {floor.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
