"""The unit's venv install (roles/voice_service/files/install_closure.sh, the script the role runs
on the unit): the hash-locked closure goes in with `--require-hashes --no-index`, so a wheel
whose bytes differ from what the lock hashed is refused and nothing of it is installed. Run
here on a wheelhouse of small real wheels (pip's own bundled wheel, a dependency, an app that
needs it) and a fresh `--without-pip` venv, as the role makes it; no index is reached."""

from __future__ import annotations

import base64
import ensurepip
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "roles" / "voice_service" / "files" / "install_closure.sh"
APP = "vfapp-1.0-py3-none-any.whl"


def _wheel(directory: Path, name: str, code: str, requires: str = "") -> Path:
    """A complete pure-Python wheel: one module, METADATA, WHEEL and a RECORD with hashes."""
    path = directory / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    if requires:
        metadata += f"Requires-Dist: {requires}\n"
    files = {
        f"{name}.py": code,
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for member, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{member},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(path, "w") as z:
        for member, text in files.items():
            z.writestr(member, text)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """The wheelhouse as scripts/build_wheelhouse.sh lays it out: wheels + the lock."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    pip = sorted(bundled.glob("pip-*.whl"))[-1]
    (house / pip.name).write_bytes(pip.read_bytes())
    dep = _wheel(house, "vfdep", "ANSWER = 42\n")
    _wheel(house, "vfapp", "from vfdep import ANSWER\n", requires="vfdep==1.0")
    pip_version = pip.name.split("-")[1]
    (house / "requirements.txt").write_text(
        f"pip=={pip_version} \\\n    --hash=sha256:{_sha256(house / pip.name)}\n"
        f"vfdep==1.0 \\\n    --hash=sha256:{_sha256(dep)}\n"
    )
    return house


# A unit's environment: no PYTHONPATH (the tests' one would show the checkout to `pip check`).
UNIT_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _install(house: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return subprocess.run(
        ["sh", str(SCRIPT), str(house), str(venv / "bin" / "python"), APP],
        capture_output=True, text=True, timeout=180, check=False, env=UNIT_ENV,
    )  # fmt: skip


def _imports(venv: Path, module: str) -> bool:
    probe = [str(venv / "bin" / "python"), "-c", f"import {module}"]
    return subprocess.run(probe, capture_output=True, check=False, env=UNIT_ENV).returncode == 0


def test_the_locked_closure_and_the_app_install(wheelhouse: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = _install(wheelhouse, venv)
    assert done.returncode == 0, done.stderr
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import vfapp; print(vfapp.ANSWER)"],
        capture_output=True, text=True, check=True, env=UNIT_ENV,
    )  # fmt: skip
    assert out.stdout.strip() == "42"


def test_a_wheel_whose_hash_differs_is_refused(wheelhouse: Path, tmp_path: Path) -> None:
    # the same name and version, other bytes: what a swapped or corrupted download looks like
    _wheel(wheelhouse, "vfdep", "ANSWER = 666\n")
    venv = tmp_path / "venv"
    refused = _install(wheelhouse, venv)
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stderr and "vfdep" in refused.stderr
    assert not _imports(venv, "vfdep") and not _imports(venv, "vfapp")


def test_a_pip_wheel_the_lock_does_not_hash_is_not_run(wheelhouse: Path, tmp_path: Path) -> None:
    pip = next(wheelhouse.glob("pip-*.whl"))
    with zipfile.ZipFile(pip, "a") as z:
        z.writestr("pip/_planted.py", "raise SystemExit('ran a pip the lock never hashed')\n")
    venv = tmp_path / "venv"
    refused = _install(wheelhouse, venv)
    assert refused.returncode == 1
    assert "is not the pip the lock lists; refusing to run it" in refused.stderr
    assert not _imports(venv, "pip")


def test_an_unlocked_dependency_is_refused(wheelhouse: Path, tmp_path: Path) -> None:
    # a closure that misses a package (the app needs vfdep, the lock forgot it) fails at
    # `pip check` instead of leaving a venv that cannot import the app
    requirements = wheelhouse / "requirements.txt"
    requirements.write_text(requirements.read_text().split("vfdep==")[0])
    done = _install(wheelhouse, tmp_path / "venv")
    assert done.returncode != 0
    assert "vfdep" in done.stdout + done.stderr
