"""Driving the fleet scenario's units from tests: ansible-playbook runs of the collection's
playbooks (their recap and fleet report), ssh to a unit, its release, a real answer.

The collection is taken from VOICEFLEET_COLLECTIONS_PATH (CI: the built artifact installed into
an empty directory, scripts/molecule_all.sh) or else the checkout's own .collections link.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from app.bench.waiting import wait_http
from tests.conftest import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = os.environ.get("VOICEFLEET_FLEET_INVENTORY") or os.environ.get(
    "MOLECULE_INVENTORY_FILE", ""
)
# every fleet test: infra + slow, skipped without the fleet's inventory (molecule's verifier)
FLEET_MARKS = [
    pytest.mark.infra,
    pytest.mark.slow,
    pytest.mark.skipif(
        not INVENTORY, reason="needs the fleet's hosts: scripts/molecule_all.sh fleet creates them"
    ),
]
COLLECTIONS = Path(os.environ.get("VOICEFLEET_COLLECTIONS_PATH") or ROOT / ".collections")
REPORTS = ROOT / "out" / "fleet-reports"
NX1, NX2, NANO = "fleet-nx16-1", "fleet-nx16-2", "fleet-nano8-1"
# The faults of conftest.py's `faults` rollout. llama-server threads on a 2-core unit:
# oversubscribed, ~10x slower decode.
SLOW_THREADS = 16
# whisper with 256 OpenMP threads and beam 10 on 2 cores: several seconds per transcription
# instead of 0.5-1 s (docs/benchmarks.md: 192 threads gave first audio 5.1 s, too near the sim's
# 4 s limit); nothing else of the unit changes
SLOW_STT = {"voice_service_stt_cpu_threads": 256,
            "voice_service_settings_extra": {"stt": {"beam_size": 10}}}  # fmt: skip
# the fake tegrastats' state file: tj_c=101.5 puts the unit past the 99 C throttle trip
HEAT = "/run/fake-l4t/tegrastats.state"


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # the fleet reports land in ./out/fleet-reports of the directory ansible runs in
        "PWD": str(ROOT),
    }


def collection_dir() -> Path:
    """Where ansible finds voicefleet.fleet (the installed copy in CI, not the checkout)."""
    out = subprocess.run(["ansible-galaxy", "collection", "list", "voicefleet.fleet", "--format",
                          "json"], env=ansible_env(), capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    found: dict[str, Any] = json.loads(out)
    assert len(found) == 1, found  # one copy on the path: no doubt which one runs
    return Path(next(iter(found))) / "voicefleet" / "fleet"


class Run:
    def __init__(self, run_id: str, rc: int, out: str, seconds: float) -> None:
        self.run_id, self.rc, self.out, self.seconds = run_id, rc, out, seconds
        self.recap = {
            m["host"]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m["counts"])}
            for m in re.finditer(r"^(?P<host>[\w.-]+)\s+: (?P<counts>ok=.*)$", out, re.M)
        }

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((REPORTS / self.run_id / "fleet-report.json").read_text())
        return data

    def unit(self, host: str) -> dict[str, Any]:
        return next(u for u in self.report["units"] if u["host"] == host)


class Faults(NamedTuple):
    """conftest.py's rollout with faults, and the release each faulty unit ran before it."""

    run: Run
    before: dict[str, str]


def site(run_id: str, *args: str, cut: tuple[str, str] | None = None) -> Run:
    """ansible-playbook voicefleet.fleet.site; with `cut=(host, address)`, the unit's traffic is
    dropped on the controller as soon as the rollout play starts (after the preflight)."""
    return play("site", run_id, *args, cut=cut)


def play(name: str, run_id: str, *args: str, cut: tuple[str, str] | None = None) -> Run:
    """ansible-playbook voicefleet.fleet.NAME (from the collection on COLLECTIONS)."""
    cmd = ["ansible-playbook", "-i", INVENTORY, f"voicefleet.fleet.{name}",
           "-e", f"rollout_run_id={run_id}", *args]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    rule: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if cut and not rule and line.startswith("PLAY [Roll out in batches]"):
                rule = ["OUTPUT", "-d", cut[1], "-p", "tcp", "-j", "REJECT",
                        "--reject-with", "tcp-reset"]  # fmt: skip
                subprocess.run(["iptables", "-w", "-I", *rule], check=True)
        rc = proc.wait(timeout=1800)
    finally:
        if rule:
            subprocess.run(["iptables", "-w", "-D", *rule], check=True)
    out = "".join(lines)
    seconds = time.monotonic() - start
    (REPORTS / run_id).mkdir(parents=True, exist_ok=True)
    (REPORTS / run_id / "ansible.log").write_text(out)
    return Run(run_id, rc, out, seconds)


def hostvars() -> dict[str, Any]:
    out = subprocess.run(["ansible-inventory", "-i", INVENTORY, "--list"], env=ansible_env(),
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    data: dict[str, Any] = json.loads(out)["_meta"]["hostvars"]
    return data


def rollout_order() -> list[str]:
    """The units in the order the rollout play batches them (inventory order: molecule writes
    its inventory sorted by name, so the canary is not necessarily the first platform)."""
    out = subprocess.run(["ansible", "all", "-i", INVENTORY, "--list-hosts"], env=ansible_env(),
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    hosts = [line.strip() for line in out.splitlines()[1:] if line.strip()]
    assert sorted(hosts) == sorted([NX1, NX2, NANO]), out
    return hosts


def ssh_options(host: str) -> tuple[list[str], str]:
    """ssh options (key, no host key checks) and user@address for a unit. The key variable
    is ansible_ssh_private_key_file or its alias ansible_private_key_file (molecule's)."""
    hv = hostvars()[host]
    key = hv.get("ansible_ssh_private_key_file") or hv["ansible_private_key_file"]
    opts = ["-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]  # fmt: skip
    return opts, f"{hv.get('ansible_user', 'root')}@{hv['ansible_host']}"


def on_unit(host: str, command: str, check: bool = True) -> str:
    opts, target = ssh_options(host)
    ssh = ["ssh", *opts, target, command]
    proc = subprocess.run(ssh, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, f"{command} on {host}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@contextmanager
def tunnel(host: str, port: int, ready: str = "/readyz") -> Iterator[str]:
    """An SSH local forward to `port` on the unit's loopback (the services bind nothing else):
    yields http://127.0.0.1:<free port> once GET `ready` through it answers 200."""
    opts, target = ssh_options(host)
    local = free_port()
    proc = subprocess.Popen(["ssh", *opts, "-N", "-T", "-o", "ExitOnForwardFailure=yes",
                             "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", target])  # fmt: skip
    try:
        url = f"http://127.0.0.1:{local}"
        wait_http(url + ready, timeout=60, proc=proc)
        yield url
    finally:
        stop_process(proc)


# The unit's releases as the voicefleet_release module keeps them (links + release.json).
SHOW = """python3 - <<'EOF'
import json, os
root = "/opt/voicefleet/releases"
def link(name):
    path = os.path.join(root, name)
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None
cur = link("current")
rel = json.load(open(os.path.join(root, cur, "release.json"))) if cur else None
print(json.dumps({"current": cur, "previous": link("previous"), "release": rel}))
EOF"""


def release(host: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(on_unit(host, SHOW))
    return data


ASK = """python3 - <<'EOF'
import json, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=10).status)
auth = {"Authorization": "Bearer %s", "Content-Type": "application/json"}
served = json.load(urllib.request.urlopen(urllib.request.Request(
    "http://127.0.0.1:8000/v1/models", headers=auth), timeout=10))["data"]
req = urllib.request.Request("http://127.0.0.1:8000/v1/chat/completions",
    data=json.dumps({"model": next(m["id"] for m in served if m["kind"] == "llm"),
                     "messages": [{"role": "user", "content": "Say hello."}],
                     "max_tokens": 8}).encode(),
    headers=auth)
print(json.load(urllib.request.urlopen(req, timeout=60))["choices"][0]["message"]["content"])
EOF"""


def serves(host: str) -> str:
    key = hostvars()[host]["voice_service_api_key"]
    out = on_unit(host, ASK % key)
    assert out.splitlines()[0] == "200", out
    assert out.splitlines()[1].strip(), f"{host} answered nothing: {out!r}"
    return out


def host_vars(host: str, values: dict[str, Any] | None) -> None:
    """Set (or with None remove) a host_vars file beside the inventory."""
    path = Path(INVENTORY).parent / "host_vars" / f"{host}.yml"
    if values is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(values))
