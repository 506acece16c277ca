#!/usr/bin/env python3
"""Hash-locked dependency closures of the voice service, one per unit target.

pyproject.toml pins the direct dependencies; a lock (locks/unit-<target>.txt) pins the whole
closure a unit installs (every transitive wheel, pip included) with the sha256 of every file
PyPI publishes for each version, so two wheelhouses built a week apart hold the same bytes and
a unit refuses a wheel whose hash differs (`pip install --require-hashes --no-index`).

    lock.py compile               regenerate every lock (`make lock`; uv resolves for each
                                  target's CPython, machine and glibc, binary wheels only)
    lock.py check                 fail when pyproject and the locks disagree (`make lint`)
    lock.py select PY MACHINE GLIBC [--driver]
                                  the lock a unit with that interpreter installs (the same
                                  CPython and machine, the newest lock glibc the unit's can
                                  load); exit 2 with what to do when there is none.
                                  --driver: that target's driver lock instead

Driver locks (locks/driver-<target>.txt): what an offline bundle's apply adds on a unit beside
the service's closure to run the collection there itself (ansible-core, the controller's pin
in pyproject's dev extra), resolved within the unit lock's versions (roles/offline).

Targets (CPython x machine x glibc): the controller and the simulated x86_64 units (Debian 12),
a JetPack 6 unit (Ubuntu 22.04), an arm64 Debian 12 unit.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
# What a unit installs beyond the service's dependencies: pip (the role runs it from its wheel).
TOOLS_IN = LOCKS / "unit-tools.in"


class Target(NamedTuple):
    python: str
    machine: str
    glibc: str
    what: str

    @property
    def name(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.machine}-glibc{self.glibc}"

    @property
    def lock(self) -> Path:
        return LOCKS / f"unit-{self.name}.txt"

    @property
    def driver_lock(self) -> Path:
        return LOCKS / f"driver-{self.name}.txt"


TARGETS = (
    Target("3.11", "x86_64", "2.36", "the controller and the simulated units (Debian 12)"),
    Target("3.11", "aarch64", "2.35", "a JetPack 6 unit (Ubuntu 22.04)"),
    Target("3.11", "aarch64", "2.36", "an arm64 Debian 12 unit"),
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_INPUTS = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.M)
_BODY = re.compile(r"^# body-sha256: ([0-9a-f]{64})\n", re.M)


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def direct_pins() -> dict[str, str]:
    """pyproject's runtime dependencies, name -> exact version (each must be pinned with ==)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = _PIN.match(requirement)
        if not match:
            raise SystemExit(f"lock: pyproject dependency {requirement!r} is not pinned with ==")
        pins[_name(match[1])] = match[2]
    return pins


def inputs_sha256(target: Target) -> str:
    """What a lock is made from: the dependency list, the extra unit tools and the target."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = "\n".join(
        [*project["dependencies"], project["requires-python"], TOOLS_IN.read_text(), str(target)]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def driver_requirements() -> list[str]:
    """What a driver lock resolves: the controller's ansible-core pin (pyproject's dev extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = project["optional-dependencies"]["dev"]
    return [r for r in dev if (m := _PIN.match(r)) and _name(m[1]) == "ansible-core"]


def driver_inputs_sha256(target: Target) -> str:
    """A driver lock is made from the ansible-core pin, the unit lock it is constrained by
    and the target."""
    text = "\n".join([*driver_requirements(), target.lock.read_text(), str(target)])
    return hashlib.sha256(text.encode()).hexdigest()


def locked_pins(lock: Path) -> dict[str, str]:
    return {_name(m[1]): m[2] for line in lock.read_text().splitlines() if (m := _PIN.match(line))}


def compile_locks(uv: str) -> None:
    version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    uv_version = " ".join(version.stdout.split()[:2])  # "uv 0.13.8", not the build triple
    for target in TARGETS:
        platform = f"{target.machine}-manylinux_{target.glibc.replace('.', '_')}"
        argv = [uv, "pip", "compile", "--quiet", "--no-header", "--generate-hashes"]
        argv += ["--only-binary", ":all:", "--python-version", target.python]
        argv += ["--python-platform", platform, "pyproject.toml", str(TOOLS_IN.relative_to(ROOT))]
        body = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        header = (
            f"# The voice service's closure for CPython {target.python} {target.machine} glibc "
            f"{target.glibc}: {target.what}.\n"
            f"# Generated by `make lock` (scripts/lock.py, {uv_version}) from "
            "pyproject.toml and locks/unit-tools.in: do not edit.\n"
            f"# inputs-sha256: {inputs_sha256(target)}\n"
            f"# body-sha256: {hashlib.sha256(body.encode()).hexdigest()}\n"
        )
        target.lock.write_text(header + body)
        print(f"lock: {target.lock.relative_to(ROOT)}: {len(locked_pins(target.lock))} packages")
        compile_driver(uv, uv_version, target, argv[:-2])  # without the inputs


def compile_driver(uv: str, uv_version: str, target: Target, base: list[str]) -> None:
    """The driver lock: ansible-core's closure with every package the unit lock also has
    held at the unit lock's version (installed over it, it changes none of the service's)."""
    with tempfile.TemporaryDirectory() as tmp:
        wants, pins = Path(tmp, "driver.in"), Path(tmp, "constraints.txt")
        wants.write_text("\n".join(driver_requirements()) + "\n")
        pins.write_text("".join(f"{n}=={v}\n" for n, v in locked_pins(target.lock).items()))
        argv = [*base, str(wants), "--constraint", str(pins)]
        body = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    body = body.replace(str(wants), "driver.in").replace(str(pins), target.lock.name)
    header = (
        f"# The offline bundle driver's closure (ansible-core) for CPython {target.python} "
        f"{target.machine} glibc {target.glibc}, within {target.lock.name}'s versions.\n"
        f"# Generated by `make lock` (scripts/lock.py, {uv_version}) from pyproject.toml's "
        "ansible-core pin: do not edit.\n"
        f"# inputs-sha256: {driver_inputs_sha256(target)}\n"
        f"# body-sha256: {hashlib.sha256(body.encode()).hexdigest()}\n"
    )
    target.driver_lock.write_text(header + body)
    n = len(locked_pins(target.driver_lock))
    print(f"lock: {target.driver_lock.relative_to(ROOT)}: {n} packages")


def problems() -> list[str]:
    """Why pyproject and the locks disagree (empty when they agree)."""
    found = []
    pins = direct_pins()
    for target in TARGETS:
        where = target.lock.relative_to(ROOT)
        if not target.lock.is_file():
            found.append(f"{where} is missing")
            continue
        text = target.lock.read_text()
        locked = locked_pins(target.lock)
        for name, version in sorted(pins.items()):
            if locked.get(name) != version:
                has = f"{name}=={locked[name]}" if name in locked else f"no {name}"
                found.append(f"{where}: pyproject pins {name}=={version}, the lock has {has}")
        recorded = _INPUTS.search(text)
        if not recorded or recorded[1] != inputs_sha256(target):
            found.append(
                f"{where} was made from other inputs (pyproject dependencies, "
                "requires-python, locks/unit-tools.in or the target)"
            )
        body = _BODY.split(text, maxsplit=1)
        if len(body) != 3 or hashlib.sha256(body[2].encode()).hexdigest() != body[1]:
            found.append(f"{where} was edited by hand (its body-sha256 does not match)")
        if text.count("--hash=sha256:") < len(locked):
            found.append(f"{where}: a package without --hash (the lock must be hash-locked)")
        if target.lock.is_file():
            found += driver_problems(target)
    return found


def driver_problems(target: Target) -> list[str]:
    where = target.driver_lock.relative_to(ROOT)
    if not target.driver_lock.is_file():
        return [f"{where} is missing"]
    found = []
    text = target.driver_lock.read_text()
    locked, unit = locked_pins(target.driver_lock), locked_pins(target.lock)
    for requirement in driver_requirements():
        match = _PIN.match(requirement)
        assert match  # driver_requirements() keeps pinned ones only
        name, version = match[1], match[2]
        if locked.get(_name(name)) != version:
            has = locked.get(_name(name))
            found.append(f"{where}: pyproject pins {requirement}, the lock has {has}")
    for name, version in sorted(locked.items()):
        if unit.get(name, version) != version:
            found.append(f"{where}: {name}=={version}, but {target.lock.name} has {unit[name]}")
    recorded = _INPUTS.search(text)
    if not recorded or recorded[1] != driver_inputs_sha256(target):
        found.append(f"{where} was made from other inputs (the ansible-core pin or the unit lock)")
    body = _BODY.split(text, maxsplit=1)
    if len(body) != 3 or hashlib.sha256(body[2].encode()).hexdigest() != body[1]:
        found.append(f"{where} was edited by hand (its body-sha256 does not match)")
    return found


def select(python: str, machine: str, glibc: str) -> Target:
    """The lock for a unit: its CPython and machine, the newest lock glibc <= the unit's."""
    if not re.fullmatch(r"\d+\.\d+", glibc):
        raise ValueError(f"glibc {glibc!r}: the service's wheels (manylinux) need a glibc system")
    fits = [
        t
        for t in TARGETS
        if (t.python, t.machine) == (python, machine) and _version(t.glibc) <= _version(glibc)
    ]
    if not fits:
        known = "; ".join(f"{t.python} {t.machine} glibc {t.glibc}" for t in TARGETS)
        raise ValueError(
            f"no lock for CPython {python} on {machine} with glibc {glibc} (locks: {known}). "
            f"Give the unit a CPython the locks target (voice_service_python), or add the "
            f"target to scripts/lock.py TARGETS and run `make lock`"
        )
    return max(fits, key=lambda t: _version(t.glibc))


def main(argv: list[str]) -> int:
    if argv[1:2] == ["compile"]:
        compile_locks(argv[2] if len(argv) > 2 else str(Path(sys.executable).parent / "uv"))
        return 0
    if argv[1:] == ["check"]:
        if found := problems():
            why = "lock: pyproject.toml and locks/ disagree (a pin edited without `make lock`?):"
            print(why, *found, "Run `make lock` and commit locks/.", sep="\n  ", file=sys.stderr)
            return 1
        return 0
    if argv[1:2] == ["select"] and len(argv) in (5, 6) and argv[5:] in ([], ["--driver"]):
        try:
            target = select(*argv[2:5])
            print(target.driver_lock if argv[5:] else target.lock)
        except ValueError as err:
            print(f"lock: {err}", file=sys.stderr)
            return 2
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
