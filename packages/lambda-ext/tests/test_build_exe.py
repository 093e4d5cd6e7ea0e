"""The parts of layer/build_exe.py that run without root: ELF reading, the zip."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "layer" / "build_exe.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_exe", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_exe"] = module
    spec.loader.exec_module(module)
    return module


build_exe = _load()


def _elf_files() -> list[Path]:
    """A few ELF files of this Python: the executable, libpython, _ssl, _json."""
    files = [Path(sys.executable).resolve()]
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY")
    if libdir and library and Path(libdir, library).is_file():
        files.append(Path(libdir, library).resolve())
    for name in ("_ssl", "_json", "math"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".so"):
            files.append(Path(spec.origin))
    return [path for path in files if build_exe.is_elf(path)]


def _readelf_floor(path: Path) -> tuple[int, ...]:
    output = subprocess.run(
        ["readelf", "--version-info", "--wide", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    needs = output.partition("Version needs section")[2]
    versions = [
        tuple(int(part) for part in found.split("."))
        for found in re.findall(r"Name: GLIBC_([0-9.]+)\s", needs)
    ]
    return max(versions, default=())


def test_floor_of_this_python_is_a_glibc_version() -> None:
    floor = build_exe.glibc_floor(Path(sys.executable).resolve())
    assert floor.floor[:1] == (2,)
    assert build_exe.format_version(floor.floor).startswith("2.")


@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf (binutils)")
@pytest.mark.parametrize("path", _elf_files(), ids=lambda path: path.name)
def test_floor_agrees_with_readelf(path: Path) -> None:
    assert build_exe.glibc_floor_of_file(path) == _readelf_floor(path)


def test_directory_floor_is_the_newest_of_its_files(tmp_path: Path) -> None:
    files = _elf_files()
    for index, path in enumerate(files):
        shutil.copy2(path, tmp_path / f"{index}-{path.name}")
    (tmp_path / "notes.txt").write_text("not an ELF file")
    floor = build_exe.glibc_floor(tmp_path)
    assert len(floor.by_file) == len(files)
    assert floor.floor == max(build_exe.glibc_floor_of_file(path) for path in files)
    assert "notes.txt" not in floor.by_file
    assert floor.text in floor.table()


def test_a_file_that_is_not_elf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "script"
    path.write_text("#!/bin/sh\n")
    assert not build_exe.is_elf(path)
    with pytest.raises(ValueError):
        build_exe.version_requirements(path)


def test_zip_keeps_the_executable_mode(tmp_path: Path) -> None:
    tree = tmp_path / "layer"
    (tree / "extensions").mkdir(parents=True)
    executable = tree / "extensions" / "cachecore"
    executable.write_text(build_exe.WRAPPER)
    executable.chmod(0o755)
    (tree / "cachecore-exe").mkdir()
    (tree / "cachecore-exe" / "data.txt").write_text("x")
    build_exe.write_zip(tree, tmp_path / "layer.zip")
    with zipfile.ZipFile(tmp_path / "layer.zip") as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["extensions/cachecore"] & 0o777 == 0o755
    assert modes["cachecore-exe/data.txt"] & 0o777 == 0o644
