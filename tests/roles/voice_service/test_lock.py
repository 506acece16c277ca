"""The hash-locked closures (locks/, scripts/lock.py): they agree with pyproject's pins, `make
lint` fails with what to do when a pin is edited without `make lock`, and each unit target
gets the lock its interpreter can load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "lock.py"), "check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lock.py", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "locks", tmp_path / "locks")
    return tmp_path


def _edit_pin(
    tmp_path: Path, name: str, version: str
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """A copy of the project with NAME's pin in pyproject.toml set to VERSION and no `make
    lock`: the version it had, and what `scripts/lock.py check` says of the copy."""
    root = _copy(tmp_path)
    pyproject = root / "pyproject.toml"
    pinned = re.search(rf'"{re.escape(name)}==([0-9.]+)"', pyproject.read_text())
    assert pinned
    pyproject.write_text(pyproject.read_text().replace(pinned[0], f'"{name}=={version}"'))
    return pinned[1], _check(root)


def test_the_committed_locks_agree_with_pyproject_and_lint_checks_it() -> None:
    done = _check(ROOT)
    assert done.returncode == 0, done.stderr
    lint = re.search(r"^lint:\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert lint and "scripts/lock.py check" in lint[1]


def test_a_pin_edited_without_make_lock_fails_with_what_to_do(tmp_path: Path) -> None:
    was, drift = _edit_pin(tmp_path, "fastapi", "9.9.9")
    assert drift.returncode == 1
    assert f"pyproject pins fastapi==9.9.9, the lock has fastapi=={was}" in drift.stderr
    assert "Run `make lock`" in drift.stderr
    assert drift.stderr.count("unit-cp311-") >= 3  # every target's lock is named


def test_a_hand_edited_lock_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    lock = root / "locks" / "unit-cp311-aarch64-glibc2.35.txt"
    # a transitive pin bumped by hand: the direct pins and the inputs still agree
    text = lock.read_text()
    idna = re.search(r"^idna==(\S+) ", text, re.M)
    assert idna
    lock.write_text(text.replace(idna[0], "idna==99.0 "))
    drift = _check(root)
    assert drift.returncode == 1
    assert "unit-cp311-aarch64-glibc2.35.txt was edited by hand" in drift.stderr
    assert "Run `make lock`" in drift.stderr


def _select(*target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "select", *target],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "lock"),
    [
        (("3.11", "aarch64", "2.35"), "unit-cp311-aarch64-glibc2.35.txt"),  # JetPack 6
        (("3.11", "aarch64", "2.36"), "unit-cp311-aarch64-glibc2.36.txt"),  # arm64 Debian 12
        (("3.11", "aarch64", "2.39"), "unit-cp311-aarch64-glibc2.36.txt"),  # newer glibc loads it
        (("3.11", "x86_64", "2.36"), "unit-cp311-x86_64-glibc2.36.txt"),  # controller, sim units
    ],
)
def test_each_unit_target_gets_the_lock_its_glibc_loads(target: tuple[str, ...], lock: str) -> None:
    done = _select(*target)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT / "locks" / lock


@pytest.mark.parametrize(
    "target", [("3.12", "x86_64", "2.36"), ("3.11", "aarch64", "2.31"), ("3.11", "riscv64", "2.36")]
)
def test_a_target_without_a_lock_is_refused_with_what_to_do(target: tuple[str, ...]) -> None:
    done = _select(*target)
    assert done.returncode == 2 and not done.stdout
    assert f"no lock for CPython {target[0]} on {target[1]} with glibc {target[2]}" in done.stderr
    assert "make lock" in done.stderr


def test_every_locked_package_is_pinned_and_hashed() -> None:
    for lock in sorted((ROOT / "locks").glob("unit-*.txt")):
        body = lock.read_text().split("# body-sha256: ", 1)[1].split("\n", 1)[1]
        entries = re.split(r"\n(?=[a-z0-9])", body.strip())
        assert len(entries) > 40, lock
        for entry in entries:
            assert re.match(r"[a-z0-9._-]+==\S+ \\\n", entry), (lock.name, entry[:80])
            assert "--hash=sha256:" in entry, (lock.name, entry[:80])
        assert "pip==" in lock.read_text()  # the role runs pip from the locked wheel


def test_the_driver_locks_hold_ansible_core_within_the_unit_locks_versions() -> None:
    """The offline bundle's driver (roles/offline) installs over the service's closure: its lock
    adds ansible-core (the controller's pin) and changes none of the unit lock's versions."""
    pin = re.search(r'"ansible-core==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin
    for unit in sorted((ROOT / "locks").glob("unit-*.txt")):
        target = re.fullmatch(r"unit-cp3(\d+)-(\w+)-glibc([\d.]+)\.txt", unit.name)
        assert target
        driver = _select(f"3.{target[1]}", target[2], target[3], "--driver")
        assert driver.returncode == 0, driver.stderr
        path = Path(driver.stdout.strip())
        assert path.name == unit.name.replace("unit-", "driver-")
        pins = dict(re.findall(r"^([a-z0-9._-]+)==(\S+) ", path.read_text(), re.M))
        units = dict(re.findall(r"^([a-z0-9._-]+)==(\S+) ", unit.read_text(), re.M))
        assert pins["ansible-core"] == pin[1]
        assert all(units.get(n, v) == v for n, v in pins.items()), path.name


def test_an_ansible_core_pin_edited_without_make_lock_fails(tmp_path: Path) -> None:
    _, drift = _edit_pin(tmp_path, "ansible-core", "2.99.0")
    assert drift.returncode == 1
    assert "pyproject pins ansible-core==2.99.0" in drift.stderr
    assert drift.stderr.count("driver-cp311-") >= 3
