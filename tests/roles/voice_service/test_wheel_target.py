"""The unit's wheelhouse target (scripts/wheel_target.py, scripts/build_wheelhouse.sh).

A JetPack 6 unit (aarch64, glibc 2.35) must get wheels tagged manylinux_2_28 (numpy 2.3+, av
publish no older aarch64 tag); the old `--platform manylinux2014_aarch64` left them out and the
wheelhouse failed to resolve. Checked with pip's own resolver against a local find-links
directory of minimal wheels, so no index is reached.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheel_target", ROOT / "scripts/wheel_target.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wt = _load()


def test_tags_cover_every_glibc_the_unit_can_load_and_nothing_newer() -> None:
    tags = wt.platform_tags("aarch64", "2.35")
    assert tags[0] == "manylinux_2_35_aarch64"
    assert "manylinux_2_28_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert "manylinux_2_36_aarch64" not in tags
    # manylinux1/2010 never existed for aarch64; they do for x86_64
    assert not any(t.startswith(("manylinux1_", "manylinux2010_")) for t in tags)
    x86 = wt.platform_tags("x86_64", "2.36")
    assert {"manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_36_x86_64"} <= set(x86)


@pytest.mark.parametrize(
    ("python", "machine", "glibc", "message"),
    [
        ("3.10", "aarch64", "2.35", "needs CPython 3.11"),
        ("3", "aarch64", "2.35", "MAJOR.MINOR"),
        ("3.11", "aarch64", "2.12", "glibc 2.17 or newer"),
        ("3.11", "aarch64", "", "MAJOR.MINOR"),
        ("3.11", "arm 64", "2.35", "machine"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(
    python: str, machine: str, glibc: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        wt.pip_args(python, machine, glibc)


def _wheel(directory: Path, name: str, tag: str) -> Path:
    """A minimal valid wheel (metadata only) with the given platform tag."""
    path = directory / f"{name}-1.0-cp311-cp311-{tag}.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        wheel = f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-{tag}\n"
        z.writestr(f"{info}/WHEEL", wheel)
        z.writestr(f"{info}/RECORD", "")
    return path


def _pip_download(links: Path, dest: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-index",
         "--find-links", str(links), "-d", str(dest), *args, "numpylike==1.0", "legacy==1.0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_pip_resolves_manylinux_2_28_wheels_for_a_jetpack6_unit(tmp_path: Path) -> None:
    links, dest = tmp_path / "links", tmp_path / "dest"
    links.mkdir()
    # how numpy 2.4 and av publish for aarch64, and an older package's legacy tag
    _wheel(links, "numpylike", "manylinux_2_27_aarch64.manylinux_2_28_aarch64")
    _wheel(links, "legacy", "manylinux2014_aarch64")
    ok = _pip_download(links, dest, wt.pip_args("3.11", "aarch64", "2.35"))
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name.split("-")[0] for p in dest.glob("*.whl")) == ["legacy", "numpylike"]
    # what the example inventory used to say: the manylinux_2_28 wheel is not found
    old = ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_aarch64"]
    refused = _pip_download(links, tmp_path / "old", old)
    assert refused.returncode != 0 and "numpylike" in refused.stderr
    # a unit whose glibc is older than the wheel needs does not get it either
    older = _pip_download(links, tmp_path / "older", wt.pip_args("3.11", "aarch64", "2.26"))
    assert older.returncode != 0 and "numpylike" in older.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("3.10 aarch64 2.35", "needs CPython 3.11"),
        ("3.11 aarch64", "expected 'PYTHON MACHINE GLIBC'"),
    ],
)
def test_build_wheelhouse_refuses_a_bad_target_before_downloading(
    tmp_path: Path, target: str, message: str
) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts/build_wheelhouse.sh"), str(tmp_path / "wh")],
        env={**os.environ, "PYTHON": sys.executable, "UNIT_TARGET": target},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not any((tmp_path / "wh").glob("deps-*")), "nothing is built for a refused target"


def test_the_minimum_python_is_the_packages_own() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=" + ".".join(map(str, wt.MIN_PYTHON))
