#!/usr/bin/env python3
"""The pip target of a unit's wheelhouse, from what the unit's own Python reports.

A unit is described by three facts its interpreter prints (roles/voice_service preflight):
its CPython version (``3.11``), its machine (``aarch64``) and its C library (glibc ``2.35``
on JetPack 6 / Ubuntu 22.04). Binary wheels on PyPI are tagged with the oldest glibc they
need (``manylinux_2_28_aarch64``; the legacy ``manylinux2014`` is glibc 2.17), and pip given
``--platform`` accepts exactly the tags it is given, not older ones. So one
``--platform manylinux2014_aarch64`` (what the example inventory used to say) silently drops
every package whose aarch64 wheels are ``manylinux_2_28`` (numpy 2.3+, av): the wheelhouse
fails to resolve. This lists every tag the unit's glibc can load, newest first.

    wheel_target.py PY MACHINE GLIBC   the pip download arguments for that unit, one per line
                                       (binary wheels only, also for the controller's own
                                       target: a wheel built here would not match the lock's
                                       hashes); exit 2 (with why) for a target the service
                                       cannot run on

Used by scripts/build_wheelhouse.sh; tested in tests/roles/voice_service/test_wheel_target.py.
"""

from __future__ import annotations

import re
import sys

MIN_PYTHON = (3, 11)  # pyproject.toml requires-python; fastapi and asyncio.timeout need it
# Legacy manylinux names and the glibc they stand for (PEP 600).
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_LEGACY_MACHINES = {"x86_64", "i686"}  # manylinux1/2010 exist for these only


def parse_version(text: str, what: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if not match:
        raise ValueError(f"{what}: expected MAJOR.MINOR, got {text!r}")
    return int(match[1]), int(match[2])


def platform_tags(machine: str, glibc: str) -> list[str]:
    """Every manylinux tag a unit with this machine and glibc can install, newest first."""
    if not re.fullmatch(r"[a-z0-9_]+", machine):
        raise ValueError(f"machine: unexpected {machine!r}")
    major, minor = parse_version(glibc, "glibc")
    if major != 2 or minor < 17:
        raise ValueError(f"glibc {glibc}: manylinux wheels need glibc 2.17 or newer")
    tags: list[str] = []
    for m in range(minor, 4, -1):
        tags.append(f"manylinux_2_{m}_{machine}")
        legacy = _LEGACY.get((2, m))
        if legacy and (legacy == "manylinux2014" or machine in _LEGACY_MACHINES):
            tags.append(f"{legacy}_{machine}")
    return tags


def check_python(version: str) -> str:
    major, minor = parse_version(version, "python")
    if (major, minor) < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        raise ValueError(f"python {version}: the service needs CPython {need} or newer")
    return f"{major}.{minor}"


def pip_args(python: str, machine: str, glibc: str) -> list[str]:
    """`pip download` arguments for binary wheels for the target (ValueError if it is not one
    the service can run on)."""
    version = check_python(python)
    tags = platform_tags(machine, glibc)
    args = [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        version,
    ]
    for tag in tags:
        args += ["--platform", tag]
    return args


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        args = pip_args(*argv[1:])
    except ValueError as err:
        print(f"wheel_target: {err}", file=sys.stderr)
        return 2
    print("\n".join(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
