"""The voice_service role's Wyoming variables, rendered by ansible-playbook from the role's own
defaults into the settings file (validated by app/settings.py) and the systemd unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "voice_service"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "loopback": {"voice_service_wyoming_enabled": True},
    "exposed": {
        "voice_service_wyoming_enabled": True,
        "voice_service_wyoming_expose": True,
        "voice_service_wyoming_bind_address": "192.168.1.20",
        "voice_service_wyoming_zeroconf": True,
        "voice_service_wyoming_zeroconf_name": "kitchen-unit",
    },
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    tasks = []
    for name, case_vars in CASES.items():
        for template, suffix in (("voicefleet.yaml.j2", "yaml"), ("voicefleet.service.j2", "unit")):
            tasks.append(
                {
                    "name": f"{name} {suffix}",
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / template),
                        "dest": str(out / f"{name}.{suffix}"),
                        "mode": "0644",
                    },
                    "vars": case_vars,
                }
            )
    playbook = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            # the shared names (roles/common) first, as the role's dependency provides them
            "vars_files": [
                str(ROOT / "roles/common/defaults/main.yml"),
                str(ROLE / "defaults" / "main.yml"),
            ],
            "vars": {
                "_voice_service_build": {"version": "0.1.0", "key": "k"},
                "__voice_service_model_links": {"results": []},  # configure.yml's stat of the store
                "ansible_python_interpreter": sys.executable,
            },
            "tasks": tasks,
        }
    ]
    (out / "play.yml").write_text(json.dumps(playbook))
    env = {**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "1"}
    subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(out / "play.yml")],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    return out


def _settings(rendered: Path, name: str) -> Settings:
    return Settings(**yaml.safe_load((rendered / f"{name}.yaml").read_text()))


def _families(rendered: Path, name: str) -> list[str]:
    unit = (rendered / f"{name}.unit").read_text().splitlines()
    lines = [line for line in unit if line.startswith("RestrictAddressFamilies=")]
    assert len(lines) == 1
    return lines[0].split("=", 1)[1].split()


def test_off_by_default(rendered: Path) -> None:
    w = _settings(rendered, "default").wyoming
    assert (w.enabled, w.host, w.allow_unauthenticated, w.zeroconf) == (
        False, "127.0.0.1", False, False,
    )  # fmt: skip
    assert "AF_NETLINK" not in _families(rendered, "default")


def test_enabled_stays_on_loopback(rendered: Path) -> None:
    w = _settings(rendered, "loopback").wyoming
    assert (w.enabled, w.host, w.port, w.allow_unauthenticated) == (True, "127.0.0.1", 10600, False)


def test_exposed_only_when_asked_and_acknowledged(rendered: Path) -> None:
    w = _settings(rendered, "exposed").wyoming
    assert (w.enabled, w.host, w.allow_unauthenticated) == (True, "192.168.1.20", True)
    assert (w.zeroconf, w.zeroconf_name, w.max_connections) == (True, "kitchen-unit", 16)
    assert "AF_NETLINK" in _families(rendered, "exposed")
