"""The simulated fleet: `up` twice is idempotent; `down` leaves nothing behind.

Needs root and systemd-nspawn (the nspawn test fleet); sends traffic only to the fleet's own
hosts on the test bridge.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NSPAWN_MARKS

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "scripts/sim_fleet.sh"
NSPAWNCTL = ROOT / "scripts/nspawn/nspawnctl"
SIM_HOSTS = {"sim-nx16-1": "10.214.0.11", "sim-nx16-2": "10.214.0.12", "sim-nano8-1": "10.214.0.13",
             "sim-prom-1": "10.214.0.19"}  # fmt: skip  # the 3 units and their monitoring host

pytestmark = NSPAWN_MARKS


def sh(*cmd: str | Path, timeout: float = 600) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def machine_state() -> dict[str, object]:
    """What a fleet could leave behind on the machine."""
    netns = sh("ip", "netns", "list")
    links = [ln.split(":")[1].strip().split("@")[0] for ln in sh("ip", "-o", "link").splitlines()]
    rules = [
        ln for t in ("nat", "filter") for ln in sh("iptables", "-w", "-t", t, "-S").splitlines()
    ]
    mounts = Path("/proc/self/mountinfo").read_text()
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob("*/voicefleet/sim-*") if p.is_dir()]
    return {
        "netns": sorted(n.split()[0] for n in netns.splitlines() if n.startswith("sim-")),
        "links": sorted(links),
        "rules": sorted(rules),
        "overlays": sorted(ln for ln in mounts.splitlines() if "/hosts/sim-" in ln),
        "cgroups": cgroups,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }


def fleet() -> dict[str, dict[str, object]]:
    rows = json.loads(sh(NSPAWNCTL, "list", "--json"))
    return {r["name"]: r for r in rows if r["name"] in SIM_HOSTS}


def alive(pid: int) -> bool:
    """Running (not merely a zombie waiting for its new parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def summary(output: str) -> dict[str, str]:
    line = next(ln for ln in output.splitlines() if ln.startswith("sim_fleet up:"))
    return dict(kv.split("=") for kv in line.split()[2:])


def test_up_twice_is_idempotent_and_down_leaves_nothing():
    before = machine_state()
    if fleet():
        pytest.skip("a sim fleet is already up; run `scripts/sim_fleet.sh down` first")
    pids: list[int] = []
    try:
        first = summary(sh(SIM, "up"))
        assert first["hosts_changed"] == "true"
        hosts = fleet()
        assert {n: h["address"] for n, h in hosts.items()} == SIM_HOSTS
        assert all(h["state"] == "running" for h in hosts.values())
        pids = [int(h["pid"]) for h in hosts.values()]
        assert len(machine_state()["netns"]) == len(SIM_HOSTS)

        second = summary(sh(SIM, "up"))
        assert second == {"hosts_changed": "false", "tasks_changed": "0"}
        assert [int(h["pid"]) for h in fleet().values()] == pids  # same processes, not restarted
    finally:
        sh(SIM, "down")

    assert fleet() == {}
    for pid in pids:
        assert not alive(pid), f"boot loop {pid} still running"
    after = machine_state()
    assert after["netns"] == [] and after["overlays"] == [] and after["cgroups"] == []
    # Links, NAT/forward rules and ip_forward are as before the fleet (the bridge and rules stay
    # only if other test hosts, e.g. a molecule scenario, were already using them).
    assert after == before
