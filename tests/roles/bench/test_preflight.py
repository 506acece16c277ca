"""The bench role's preflight (roles/bench/tasks/preflight*.yml) on this machine (localhost),
with each inventory's gate and with broken ones: every inventory passes; a misspelt threshold
key, realtime thresholds without realtime rounds, a non-boolean forbid_throttling and
forbid_throttling without a telemetry URL are refused, naming what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PLAY = """- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.import_role:
        name: voicefleet.fleet.bench
        tasks_from: preflight.yml
"""


def _sim() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (ROOT / "inventory/sim/group_vars/all/bench.yml").read_text()
    )
    return data


def _preflight(tmp_path: Path, unit_vars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    play, extra = tmp_path / "play.yml", tmp_path / "vars.json"
    play.write_text(PLAY)
    extra.write_text(json.dumps({"voice_service_api_key": "k" * 16, **unit_vars}))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    return subprocess.run(
        [str(PLAYBOOK), "-i", "localhost,", "-c", "local", str(play), "-e", f"@{extra}"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "path",
    sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("inventory/*/group_vars/*/bench.yml")),
)
def test_every_inventorys_gate_passes_the_preflight(tmp_path: Path, path: str) -> None:
    run = _preflight(tmp_path, yaml.safe_load((ROOT / path).read_text()))
    assert run.returncode == 0, run.stdout[-2000:]


def test_broken_gates_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    sim = _sim()
    typo = {**sim, "bench_thresholds": {**sim["bench_thresholds"], "realtime_first_audio_ms_mx": 1}}
    run = _preflight(tmp_path, typo)
    assert run.returncode != 0 and "unknown: [''realtime_first_audio_ms_mx'']" in run.stdout, (
        run.stdout[-2000:]
    )
    run = _preflight(tmp_path, {**sim, "bench_realtime_turns": 0})
    assert run.returncode != 0
    assert "bench_realtime_turns (0) must be >= 0 and > 0 when a realtime threshold" in run.stdout
    assert "realtime_first_audio_ms_max" in run.stdout
    for thresholds, extra in (
        ({**sim["bench_thresholds"], "forbid_throttling": "sometimes"}, {}),
        (sim["bench_thresholds"], {"bench_telemetry_url": ""}),
    ):
        run = _preflight(tmp_path, {**sim, **extra, "bench_thresholds": thresholds})
        assert run.returncode != 0 and "forbid_throttling" in run.stdout, run.stdout[-2000:]
