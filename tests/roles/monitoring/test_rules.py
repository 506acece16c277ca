"""The monitoring role's rules and generated configuration, checked by Prometheus' promtool
(Debian's prometheus package, installed by `make setup`).

- `promtool test rules rules_test.yml`: input series -> the recording rules' figures and the
  alerts (firing only after their `for`, only for the unit at fault).
- The files the role generates from an inventory (targets, per-group thresholds, prometheus.yml)
  render and pass `promtool check config`; thresholds equal the group_vars' bench gates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make setup` installs Debian's prometheus package"
    return path


def units_of(hosts: dict) -> list[str]:
    return [
        h
        for g, e in hosts["all"]["children"].items()
        if g != "monitoring"
        for h in e.get("hosts", {})
    ]


def test_promtool_rule_tests_pass() -> None:
    run = subprocess.run(
        [_promtool(), "test", "rules", "rules_test.yml"],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@pytest.mark.parametrize("inventory", ["sim", "example"])
def test_generated_config_from_the_inventory(tmp_path: Path, inventory: str) -> None:
    src = ROOT / "inventory" / inventory
    inv = tmp_path / "inventory"
    shutil.copytree(src, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["monitoring"] = {
        "hosts": {"prom-1": {"ansible_python_interpreter": sys.executable}}
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    # the example inventory's keys live in ansible-vault; stand-ins of the right length
    extra = {"vault_voice_service_api_key": "k" * 32, "vault_llamacpp_api_key": "l" * 32}
    out = tmp_path / "out"
    key = tmp_path / "id_ed25519"
    key.write_text("stand-in: the render reads only that it exists\n")
    extra["monitoring_ssh_private_key_file"] = str(key)
    extra["monitoring_alert_for"] = {"LlamaServerDown": "10s"}
    for sub in ("rules", "file_sd", "keys", "tunnels"):
        (out / sub).mkdir(parents=True)
    (out / "keys/voicefleet.key").write_text("x")
    (out / "keys/llama-server.key").write_text("x")
    run = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inv / "hosts.yml"),
            str(HERE / "render.yml"),
            "-e",
            json.dumps({**extra, "out_dir": str(out)}),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
        },
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    check = subprocess.run(
        [_promtool(), "check", "config", str(out / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # the rules as rendered: the same rules, only the overridden `for` differs
    static = yaml.safe_load(
        (ROOT / "roles/monitoring/files/rules/voicefleet.rules.yml").read_text()
    )
    rendered = yaml.safe_load((out / "rules/voicefleet.rules.yml").read_text())
    for group in static["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "LlamaServerDown":
                rule["for"] = "10s"
    assert rendered == static
    check = subprocess.run(
        [_promtool(), "check", "rules", str(out / "rules/voicefleet.rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tunnel = (out / "tunnels" / f"{sorted(units_of(hosts))[0]}.env").read_text()
    assert "FORWARDS=-L 127.0.0.1:19000:127.0.0.1:8000 -L 127.0.0.1:19001:127.0.0.1:8080" in tunnel
    # the unit's own login (sim: root; example: voicefleet-admin), not the monitoring host's
    assert f"UNIT_SSH_USER={hosts['all']['vars']['ansible_user']}" in tunnel

    units = sorted(h for g in hosts["all"]["children"].values() for h in g.get("hosts", {}))
    units.remove("prom-1")
    targets = json.loads((out / "file_sd/llama-server.json").read_text())
    assert [t["labels"]["unit"] for t in targets] == units  # one entry per unit, not prom-1
    assert len({t["targets"][0] for t in targets}) == len(units)  # a port per unit
    groups = {t["labels"]["unit"]: t["labels"]["group"] for t in targets}
    for group, entry in hosts["all"]["children"].items():
        for unit in entry.get("hosts", {}):
            if group != "monitoring":
                assert groups[unit] == group

    recorded = yaml.safe_load((out / "rules/thresholds.rules.yml").read_text())
    turn = {
        r["labels"]["group"]: r["expr"]
        for r in recorded["groups"][0]["rules"]
        if r["record"] == "voicefleet:bench_voice_turn_seconds:max"
    }
    for group in {g for g in groups.values()}:
        gate_file = src / "group_vars" / group / "bench.yml"
        gates_file = gate_file if gate_file.exists() else src / "group_vars/all/bench.yml"
        gate = yaml.safe_load(gates_file.read_text())["bench_thresholds"]
        assert turn[group] == f"vector({gate['voice_turn_ms_max'] / 1000.0})"


def test_dashboard_reads_only_series_the_rules_record() -> None:
    """The Grafana dashboard's recorded series (unit:..., voicefleet:...) all exist in the rules,
    so a renamed rule cannot leave an empty panel behind."""
    dashboard = json.loads(
        (ROOT / "roles/monitoring/files/grafana/voicefleet-fleet.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:unit|voicefleet):[a-z_:0-9]+)", e)}
    rules = yaml.safe_load((ROOT / "roles/monitoring/files/rules/voicefleet.rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    template = (ROOT / "roles/monitoring/templates/thresholds.rules.yml.j2").read_text()
    recorded |= set(re.findall(r"record: (\S+)", template))
    assert used and used <= recorded, used - recorded
    assert dashboard["uid"] and "id" not in dashboard  # provisioning-ready: no instance id
