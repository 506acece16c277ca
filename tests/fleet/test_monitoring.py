"""Live fleet monitoring on the fleet scenario's units (after test_fleet.py, same bring-up).

The jetson_telemetry playbook runs on the three units and changes nothing (site.yml deployed
the exporter, in the rollout before the bench gate); the
monitoring role's files are rendered from this inventory (tests/roles/monitoring/render.yml)
and a real Prometheus (Debian's, on the controller: it has no systemd, so Prometheus and the
tunnels run as plain processes here with the tunnel unit's own ssh arguments) scrapes every
unit through its SSH tunnel. Asserted: all 9 targets up, known metrics have samples, a unit
made to throttle fires JetsonThermalThrottling, and stopping llama-server on one unit fires
LlamaServerDown for that unit only within the (shortened) `for` plus scrape and evaluation
latency; then it recovers. Traffic: loopback and the fleet's own addresses.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, stop_process
from tests.fleet.runner import FLEET_MARKS, serves
from tests.fleet.test_fleet import (
    INVENTORY,
    NANO,
    NX1,
    NX2,
    ROOT,
    ansible_env,
    hostvars,
    on_unit,
    ssh_options,
)

SCRAPE_S = 2
pytestmark = FLEET_MARKS
FOR_S = {"LlamaServerDown": 6, "JetsonThermalThrottling": 4}


def _playbook(*args: str) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", *args], cwd=ROOT, env=ansible_env(), capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def _port_block(n: int) -> int:
    """A base port with n free ports after it (the tunnels' local ports)."""
    for base in range(39000, 60000, 97):
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no free port block")


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as resp:
        result: list[dict[str, Any]] = json.load(resp)["data"]["result"]
    return result


def _until(what: str, check: Any, timeout: float) -> float:
    """Poll check() until truthy; seconds it took."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        try:
            last = check()
            if last:
                return time.monotonic() - start
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout} s (last: {last})")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("monitoring")
    rc, out, again_s = _playbook("-i", INVENTORY, "voicefleet.fleet.jetson_telemetry")
    changed = [int(n) for n in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", out, re.M)]
    assert rc == 0 and len(changed) == 3 and not any(changed), out[-4000:]
    print(f"\njetson_telemetry.yml after site.yml (no change): {again_s:.1f} s")

    overlay = tmp / "monitoring-host.yml"
    overlay.write_text(yaml.safe_dump({"all": {"children": {"monitoring": {"hosts": {
        "prom-local": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    }}}}}))  # fmt: skip
    key = ssh_options(NX1)[0][1]
    out_dir = tmp / "etc"
    for sub in ("rules", "file_sd", "keys", "tunnels"):
        (out_dir / sub).mkdir(parents=True)
    hv = hostvars()[NX1]
    (out_dir / "keys/voicefleet.key").write_text(hv["voice_service_api_key"])
    (out_dir / "keys/llama-server.key").write_text(hv["llamacpp_api_key"])
    extra = {
        "out_dir": str(out_dir),
        "monitoring_ssh_private_key_file": key,
        "monitoring_scrape_interval": f"{SCRAPE_S}s",
        "monitoring_evaluation_interval": f"{SCRAPE_S}s",
        "monitoring_alert_for": {name: f"{s}s" for name, s in FOR_S.items()},
        "monitoring_tunnel_base_port": _port_block(9),
    }
    rc, out, _ = _playbook(
        "-i", INVENTORY, "-i", str(overlay), str(ROOT / "tests/roles/monitoring/render.yml"),
        "-e", json.dumps(extra),
    )  # fmt: skip
    assert rc == 0, out[-4000:]

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for env_file in sorted((out_dir / "tunnels").glob("*.env")):
            lines = env_file.read_text().splitlines()
            env = dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")
            procs.append(subprocess.Popen([  # the tunnel unit's ExecStart, with test host keys
                "ssh", "-N", "-T", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-o", "ServerAliveInterval=15", "-o", "ConnectTimeout=10",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-i", key, "-p", env["UNIT_SSH_PORT"],
                *env["FORWARDS"].split(), f"{env['UNIT_SSH_USER']}@{env['UNIT_ADDRESS']}",
            ]))  # fmt: skip
        port = free_port()
        prometheus_bin = shutil.which("prometheus")
        assert prometheus_bin, "prometheus missing: `make setup` installs Debian's package"
        procs.append(subprocess.Popen([
            prometheus_bin, f"--config.file={out_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]))  # fmt: skip
        yield f"http://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def _targets(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=5) as resp:
        active: list[dict[str, Any]] = json.load(resp)["data"]["activeTargets"]
    return active


def _firing(url: str, alert: str) -> set[str]:
    promql = f'ALERTS{{alertname="{alert}", alertstate="firing"}}'
    return {r["metric"]["unit"] for r in _query(url, promql)}


def test_every_units_targets_are_up_with_samples(prometheus: str) -> None:
    start = time.monotonic()
    _until(
        "all 9 targets up",
        lambda: (t := _targets(prometheus)) and len(t) == 9 and all(x["health"] == "up" for x in t),
        90,
    )
    print(f"all targets up {time.monotonic() - start:.1f} s after Prometheus started")
    jobs = {(t["labels"]["unit"], t["labels"]["job"]) for t in _targets(prometheus)}
    assert jobs == {
        (u, j) for u in (NX1, NX2, NANO) for j in ("voicefleet", "llama-server", "jetson-telemetry")
    }
    groups = {t["labels"]["unit"]: t["labels"]["group"] for t in _targets(prometheus)}
    assert groups == {NX1: "orin_nx_16gb", NX2: "orin_nx_16gb", NANO: "orin_nano_8gb"}
    for metric in (
        'jetson_temperature_celsius{sensor="tj"}',
        "llamacpp:requests_processing",
        "voicefleet_in_flight_requests",
    ):
        assert {r["metric"]["unit"] for r in _query(prometheus, metric)} == {NX1, NX2, NANO}
    gate = _query(prometheus, "voicefleet:bench_voice_turn_seconds:max")
    assert {r["metric"]["group"] for r in gate} == {"orin_nx_16gb", "orin_nano_8gb"}


def test_fleet_status_prints_every_units_live_state(prometheus: str) -> None:
    """The documented command (README, docs/monitoring.md; `make demo` ends with it): every
    unit's three targets up, and the decode speed of a unit that just generated tokens."""
    for unit in (NX1, NX2, NANO):
        serves(unit)  # a real answer: llama-server generates, the service counts a request
    cmd = [sys.executable, "-m", "app.cli", "fleet-status", "--prometheus", prometheus]
    start = time.monotonic()
    proc = subprocess.run([*cmd, "--wait", "60", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert status["targets"] == status["targets_up"] == 9 and status["alerts_firing"] == 0
    assert {u: s["group"] for u, s in status["units"].items()} == {
        NX1: "orin_nx_16gb",
        NX2: "orin_nx_16gb",
        NANO: "orin_nano_8gb",
    }
    for unit in status["units"].values():
        assert unit["up"] == {"voicefleet": 1, "llama-server": 1, "jetson-telemetry": 1}
        assert unit["tj_celsius"] is not None and unit["tj_celsius"] > 0
    # the answers above reach Prometheus with the next scrape: llama-server's own counters
    _until("decode tok/s of every unit", lambda: all(
        u["decode_tps"] for u in json.loads(subprocess.run(
            [*cmd, "--json"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout)["units"].values()), 30)  # fmt: skip
    table = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert set(rows) == {NX1, NX2, NANO}, table
    assert all(r[2:5] == ["up", "up", "up"] and float(r[5]) > 0 for r in rows.values()), table
    print(f"fleet-status: {time.monotonic() - start:.1f} s\n{table}")


def test_a_throttling_unit_fires_the_throttling_alert(prometheus: str) -> None:
    state = "/run/fake-l4t/tegrastats.state"
    gpu_clock = f'jetson_gpu_frequency_mhz{{unit="{NANO}"}}'
    cool_mhz = float(_query(prometheus, gpu_clock)[0]["value"][1])
    assert not _firing(prometheus, "JetsonThermalThrottling")
    on_unit(NANO, f"mkdir -p /run/fake-l4t && echo tj_c=101.5 > {state}")
    try:
        took = _until(
            "JetsonThermalThrottling firing",
            lambda: _firing(prometheus, "JetsonThermalThrottling"),
            FOR_S["JetsonThermalThrottling"] + 30,
        )
        assert _firing(prometheus, "JetsonThermalThrottling") == {NANO}
        print(f"JetsonThermalThrottling fired {took:.1f} s after the unit got hot")
        # the fake's BPMP halved the GPU clock, and Prometheus saw it
        assert float(_query(prometheus, gpu_clock)[0]["value"][1]) == cool_mhz // 2
    finally:
        on_unit(NANO, f"rm -f {state}")


def test_stopping_llama_server_fires_its_alert_within_for(prometheus: str) -> None:
    assert not _firing(prometheus, "LlamaServerDown")
    on_unit(NX2, "systemctl stop llama-server")
    try:
        took = _until(
            "LlamaServerDown firing", lambda: _firing(prometheus, "LlamaServerDown"),
            FOR_S["LlamaServerDown"] + 30,
        )  # fmt: skip
        assert _firing(prometheus, "LlamaServerDown") == {NX2}
        # `for` + a scrape to see it down + an evaluation to start pending + one to fire
        assert took <= FOR_S["LlamaServerDown"] + 3 * SCRAPE_S + 3, took
        print(
            f"LlamaServerDown fired {took:.1f} s after the stop (for: {FOR_S['LlamaServerDown']} s)"
        )
        # only llama-server's target is down: the service on that unit still answers its scrape
        up = _query(prometheus, f'up{{unit="{NX2}"}}')
        assert {r["metric"]["job"]: r["value"][1] for r in up} == {
            "voicefleet": "1",
            "llama-server": "0",
            "jetson-telemetry": "1",
        }
    finally:
        on_unit(NX2, "systemctl start llama-server")
    _until("LlamaServerDown resolved", lambda: not _firing(prometheus, "LlamaServerDown"), 120)
