"""The role provides the interpreter (roles/voice_service/tasks/python.yml, python_install.yml):
the role's own tasks run on this Debian 12 machine (localhost) with the unit's variables of
each case, in one ansible-playbook run: which interpreter the venv gets, whether it is to be
installed, the wheel target, and what is refused with what to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ARCH = os.uname().machine
GLIBC = os.confstr("CS_GNU_LIBC_VERSION").split()[1]  # type: ignore[union-attr]

# case -> the unit's variables
CASES: dict[str, dict[str, Any]] = {
    "system python3 is 3.11": {},
    # a JetPack 6 inventory that names a python3.10: the packaged 3.11 is already there
    "packaged 3.11 already there": {"voice_service_python": "/usr/bin/python3.10"},
    "to install from the distribution": {
        "voice_service_python": "/nonexistent/python3",
        "voice_service_python_packaged_path": "/nonexistent/python3.11",
    },
    "no package source": {
        "voice_service_python": "/nonexistent/python3",
        "voice_service_python_packaged_path": "/nonexistent/python3.11",
        "voice_service_python_package": "python3.11-not-in-any-source",
    },
    "a site mirror": {
        "voice_service_python": "/nonexistent/python3",
        "voice_service_python_packaged_path": "/nonexistent/python3.11",
        "voice_service_python_package": "python3.11-from-the-site-mirror",
        "voice_service_python_apt_repo": "deb http://mirror.site.invalid/ubuntu jammy universe",
    },
    "install not allowed": {
        "voice_service_python": "/nonexistent/python3.10",
        "voice_service_python_packaged_path": "/nonexistent/python3.11",
        "voice_service_python_install": False,
    },
}


def _play(cases: dict[str, dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    tasks = []
    for name, unit_vars in cases.items():
        case = json.dumps(name)
        record = (
            f"{{'case': {case}, 'ok': true, 'python': _voice_service_python, "
            "'install': _voice_service_python_install, 'target': _voice_service_target}"
        )
        failed = f"{{'case': {case}, 'ok': false, 'msg': ansible_failed_result.msg}}"
        append_ok, append_failed = ("{{ results + [" + r + "] }}" for r in (record, failed))
        tasks.append({
            "name": name,
            "block": [
                {"ansible.builtin.include_role": {"name": "voice_service",
                                                  "tasks_from": "python.yml"},
                 "vars": unit_vars},
                {"ansible.builtin.set_fact": {"results": append_ok}},
            ],
            "rescue": [{"ansible.builtin.set_fact": {"results": append_failed}}],
        })  # fmt: skip
    tasks.append({"ansible.builtin.copy": {"content": "{{ results | to_json }}", "dest": str(out),
                                           "mode": "0644"}})  # fmt: skip
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": True,
             "vars": {"results": []}, "tasks": tasks}]  # fmt: skip
    book = out.with_suffix(".yml")
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(PLAYBOOK), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
    run = subprocess.run([*argv, str(book)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    results: list[dict[str, Any]] = json.loads(out.read_text())
    return results


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if not Path("/usr/bin/python3.11").is_file():
        pytest.fail("this test runs on the controller's Debian 12 (its /usr/bin/python3.11)")
    out = tmp_path_factory.mktemp("python-preflight") / "results.json"
    fake = out.parent / "python3-focal-arm64"
    # a unit's CPython 3.11 on Ubuntu 20.04 arm64 (glibc 2.31), as its probe would answer
    answer = json.dumps({"python": "3.11", "machine": "aarch64", "glibc": "2.31"})
    fake.write_text(f"#!/bin/sh\necho '{answer}'\n")
    fake.chmod(0o755)
    cases = {**CASES, "a glibc without a lock": {"voice_service_python": str(fake)}}
    return {r["case"]: r for r in _play(cases, out)}


def test_an_interpreter_that_is_the_locked_cpython_is_used(outcomes: dict[str, Any]) -> None:
    for case, python in [
        ("system python3 is 3.11", "/usr/bin/python3"),
        ("packaged 3.11 already there", "/usr/bin/python3.11"),
    ]:
        got = outcomes[case]
        assert got["ok"], got
        assert (got["python"], got["install"]) == (python, False)
        assert got["target"] == f"3.11 {ARCH} {GLIBC}"


def test_a_missing_cpython_is_installed_from_the_packages(outcomes: dict[str, Any]) -> None:
    for case in ("to install from the distribution", "a site mirror"):
        got = outcomes[case]
        assert got["ok"], got
        assert (got["python"], got["install"]) == ("/nonexistent/python3.11", True)
        # the target of the interpreter to come: the lock's CPython, the unit's machine + glibc
        assert got["target"] == f"3.11 {ARCH} {GLIBC}"


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no package source", r"its apt sources offer no python3\.11-not-in-any-source.*"
         r"Set voice_service_python_apt_repo to a site mirror"),
        ("install not allowed", r"has none \(/nonexistent/python3\.10 is missing or did not run;"
         r".*voice_service_python_install: true"),
        ("a glibc without a lock", r"no lock for CPython 3\.11 on aarch64 with glibc 2\.31.*"
         r"make lock"),
    ],
)  # fmt: skip
def test_what_cannot_work_is_refused_with_what_to_do(
    outcomes: dict[str, Any], case: str, says: str
) -> None:
    got = outcomes[case]
    assert not got["ok"], got
    assert re.search(says, got["msg"]), got["msg"]


def test_the_role_targets_the_locks_cpython() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import lock
    finally:
        sys.path.pop(0)
    defaults = yaml.safe_load((ROOT / "roles/voice_service/defaults/main.yml").read_text())
    assert {t.python for t in lock.TARGETS} == {defaults["voice_service_python_version"]}
