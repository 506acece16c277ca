"""The release role's directories on a fresh unit: creating release_root (0700) must not make
the parents it creates 0700 too (the file module gives created parents the mode asked for):
/opt/voicefleet holds what llama-server and the voice service run as their own users, and a
0700 parent made llama-server fail with 203/EXEC, Permission denied, on every first deploy.
Run by ansible-playbook on localhost with the role's own tasks (tasks_from: install)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def _install(tmp: Path, release_root: Path) -> None:
    playbook = tmp / "install.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable},
        "tasks": [{
            "name": "The release role's directories",
            "ansible.builtin.include_role": {"name": "voicefleet.fleet.release",
                                             "tasks_from": "install.yml"},
            "vars": {"release_root": str(release_root)},
        }],
    }]))  # fmt: skip
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "false",
    }
    run = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_parent_is_traversable_and_the_releases_stay_private(tmp_path: Path) -> None:
    root = tmp_path / "fresh" / "voicefleet" / "releases"
    _install(tmp_path, root)
    assert _mode(root) == 0o700
    assert _mode(root.parent) == 0o755  # llama and voicefleet reach their files beside it
    assert _mode(root.parent.parent) == 0o755


def test_an_existing_parent_keeps_the_mode_its_operator_set(tmp_path: Path) -> None:
    parent = tmp_path / "site"
    parent.mkdir(mode=0o750)
    parent.chmod(0o750)
    _install(tmp_path, parent / "releases")
    assert _mode(parent / "releases") == 0o700
    assert _mode(parent) == 0o750
