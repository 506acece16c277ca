"""The whole rollout on three nspawn units in two groups (molecule scenario `fleet`).

In order, on the same fleet: a full site.yml where every unit passes the gate and the report
has real figures (conftest.py's `first`, shared with test_entry_points.py, which runs first);
a re-run that changes nothing and is much faster; then the faults: a slowed unit fails the
gate and is rolled back and still serves (conftest.py's `faults`, whose other faulty units
test_gate.py checks); an unreachable unit within max_fail_percentage does not stop the
others, beyond it stops the rollout; a corrupt model on one unit's source fails that unit
before anything is replaced.

Run by `scripts/molecule_all.sh fleet` (its verifier), which creates the hosts; by hand:
VOICEFLEET_FLEET_INVENTORY=<inventory with the three units> pytest tests/fleet.
Traffic goes only to the fleet's own addresses on the test bridge and to loopback.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.gguf import read_header
from tests.fleet.runner import (
    FLEET_MARKS,
    INVENTORY,
    NANO,
    NX1,
    NX2,
    REPORTS,
    ROOT,
    SLOW_THREADS,
    Faults,
    Run,
    ansible_env,
    host_vars,
    hostvars,
    on_unit,
    release,
    rollout_order,
    serves,
    site,
    ssh_options,
)

# the fleet_report role's task, as ansible-playbook prints it (role-prefixed through
# import_role: "TASK [voicefleet.fleet.fleet_report : Mark the unit as started …]")
STARTED = "fleet_report : Mark the unit as started in the fleet report]"

pytestmark = FLEET_MARKS


def test_full_rollout_every_unit_passes_with_real_figures(first: Run) -> None:
    assert {h: c["failed"] for h, c in first.recap.items()} == {
        NX1: 0, NX2: 0, NANO: 0, "localhost": 0,
    }  # fmt: skip
    report = first.report
    assert report["summary"]["passed"] == 3 and report["summary"]["units"] == 3
    for unit in report["units"]:
        f = unit["gate"]["figures"]
        th = unit["thresholds"]
        assert unit["status"] == "passed" and unit["bench_source"] == "measured"
        assert f["decode_tps"] >= th["decode_tps_min"] > 0
        assert 0 < f["ttft_ms"] <= th["ttft_ms_max"]
        assert 0 < f["voice_turn_ms"] <= th["voice_turn_ms_max"]
        assert f["concurrent_errors"] == 0 and f["concurrent_aggregate_tps"] > 0
        assert [q["passed"] for q in unit["gate"]["quality"]] == [True, True]
        assert unit["release"]["components"]["llamacpp"]["build_key"]
        assert set(unit["release"]["components"]["models"]) == {"llm", "stt", "tts"}
    assert {u["profile"] for u in report["units"]} == {"orin_nx_16gb", "orin_nano_8gb"}
    page = (REPORTS / first.run_id / "fleet-report.html").read_text()
    assert "3 of 3 units passed" in page and "data:image/png;base64," in page
    for host in (NX1, NX2, NANO):
        serves(host)
        # the service runs unprivileged, its key only in the EnvironmentFile
        show = on_unit(host, "systemctl show voicefleet -p User -p ActiveState -p ExecStart")
        assert "User=voicefleet" in show and "ActiveState=active" in show
        assert "api_key" not in show and "sim-voice" not in show


def test_rerun_changes_nothing_and_is_much_faster(first: Run, again: Run) -> None:
    # test_entry_points.py's site.yml after the thin playbooks is this re-run when it ran
    second = again
    assert second.rc == 0, second.out[-6000:]
    print(
        f"\nsite.yml wall time: first {first.seconds:.0f} s, second {second.seconds:.0f} s "
        f"({second.seconds / first.seconds:.2f}x)"
    )
    assert {h: c["changed"] for h, c in second.recap.items()} == {
        NX1: 0, NX2: 0, NANO: 0, "localhost": 0,
    }  # fmt: skip
    assert all(u["bench_source"] == "reused" for u in second.report["units"])
    assert second.report["previous_run"] is not None
    # The 0.3x goal is a benchmark figure (printed above; docs/benchmarks.md: 0.26x, 0.29x),
    # not a timed-test threshold on a shared 2-core machine. What makes the re-run fast is
    # asserted exactly above (nothing changed, bench figures reused); this bound only
    # catches a re-run that redoes the work.
    assert second.seconds <= 0.6 * first.seconds


def test_slow_unit_fails_the_gate_is_rolled_back_and_still_serves(
    first: Run, faults: Faults
) -> None:
    run, before = faults.run, faults.before[NX2]
    assert run.rc != 0
    assert run.recap[NX2]["failed"] == 1 and run.recap[NX2]["rescued"] == 1
    # the canary, unchanged, passes; NX1 (its own fault, test_gate.py) is rolled back too
    assert run.recap[NANO]["failed"] == 0 and run.unit(NANO)["status"] == "passed"
    unit = run.unit(NX2)
    assert unit["status"] == "failed" and unit["bench_source"] == "measured"
    assert any("decode per stream" in r for r in unit["reasons"]), unit["reasons"]
    assert unit["gate"]["figures"]["decode_tps"] < unit["thresholds"]["decode_tps_min"]
    assert unit["rolled_back_to"] == before and unit["failed_release"] not in (None, before)
    # on the unit: the previous release runs again (its llama-server config), and it serves
    now = release(NX2)
    assert now["current"] == before and now["previous"] == unit["failed_release"]
    exec_start = on_unit(NX2, "systemctl show llama-server -p ExecStart")
    assert f"-t {SLOW_THREADS} " not in exec_start and "-t 1 " in exec_start
    assert on_unit(NX2, f"test -f /opt/voicefleet/releases/{unit['failed_release']}/failed.json "
                   "&& echo marked").strip() == "marked"  # fmt: skip
    serves(NX2)


def test_unreachable_unit_within_max_fail_does_not_stop_the_others(first: Run) -> None:
    canary, other, cut = rollout_order()
    address = hostvars()[cut]["ansible_host"]
    run = site(f"fleet-{int(time.time())}-unreach", "-e", "rollout_max_fail_percentage=50",
               cut=(cut, address))  # fmt: skip
    assert run.rc != 0
    assert run.unit(cut)["status"] == "unreachable"
    # batch 2 is [other, cut]: 1 of 2 failed = 50%, not above 50%: `other` is deployed and verified
    assert run.unit(other)["status"] == "passed" and run.recap[other]["failed"] == 0
    assert run.unit(canary)["status"] == "passed"
    serves(cut)  # it was only cut off: nothing was rolled back or broken on it


def test_unreachable_units_beyond_max_fail_stop_the_rollout(first: Run) -> None:
    first_two, later = rollout_order()[:2], rollout_order()[2]
    cut = first_two[1]
    address = hostvars()[cut]["ansible_host"]
    before = release(later)["current"]
    run = site(f"fleet-{int(time.time())}-stop", "-e", "rollout_batches=[2,1]",
               "-e", "rollout_max_fail_percentage=25", cut=(cut, address))  # fmt: skip
    assert run.rc != 0
    assert run.unit(cut)["status"] == "unreachable"
    assert run.unit(first_two[0])["status"] == "passed"
    # 1 of the 2 units of batch 1 failed (50% > 25%): the rollout stops before batch 2
    assert run.unit(later)["status"] == "not_reached"
    assert STARTED in run.out
    rollout = run.out.split("PLAY [Roll out in batches]")[1]
    assert f"[{later}" not in rollout.split("PLAY [Fleet report]")[0]
    assert release(later)["current"] == before
    assert "not reached (rollout stopped)" in (REPORTS / run.run_id / "fleet-report.md").read_text()


def _new_model_version(src: Path, dest: Path) -> tuple[int, str]:
    """A valid GGUF that differs from `src` (one character of the value of its `general.name`
    metadata string), i.e. a new model version with its own sha256, as a publisher would ship."""
    data = bytearray(src.read_bytes())
    key = b"general.name"
    i = data.find(struct.pack("<Q", len(key)) + key, 0, 1 << 20)
    assert i > 0, "general.name not found in the GGUF header"
    at = i + 8 + len(key)
    vtype, length = struct.unpack_from("<IQ", data, at)
    assert vtype == 8 and 0 < length < 256, (vtype, length)  # a GGUF string
    value = at + 12
    data[value] = ord("X") if data[value] != ord("X") else ord("Y")
    dest.write_bytes(bytes(data))
    header = read_header(dest)  # still a valid GGUF: same metadata, a new name
    assert header.metadata["general.name"] != read_header(src).metadata["general.name"]
    return len(data), hashlib.sha256(data).hexdigest()


@pytest.fixture
def corrupt_source(tmp_path: Path) -> Iterator[dict[str, Any]]:
    catalog = yaml.safe_load((ROOT / "inventory/sim/group_vars/all/models.yml").read_text())
    llm = next(e for e in catalog["models_catalog"] if e["role"] == "llm")
    name = llm["files"][0]["name"]
    home = Path(os.environ.get("VOICEFLEET_HOME", Path.home() / ".cache/voicefleet"))
    good = tmp_path / name
    size, sha = _new_model_version(home / "models/current/llm" / name, good)
    bad = tmp_path / "corrupt.gguf"
    data = bytearray(good.read_bytes())
    data[size // 2] ^= 0xFF  # one flipped byte in the tensor data: header still valid
    bad.write_bytes(bytes(data))
    on_unit(NANO, "mkdir -p /srv/model-source")
    opts, target = ssh_options(NANO)
    subprocess.run(["scp", "-q", *opts, str(bad), f"{target}:/srv/model-source/{name}"],
                   check=True)  # fmt: skip
    new_llm = {**llm, "name": llm["name"] + "-v2",
               "source": {"type": "local", "dir": "/srv/model-source"},
               "files": [{"name": name, "path": name, "size": size, "sha256": sha}]}  # fmt: skip
    entries = [new_llm if e is llm else e for e in catalog["models_catalog"]]
    host_vars(NANO, {"models_delivery": "unit", "models_catalog": entries})
    try:
        yield {"sha256": sha, "old": llm["files"][0]["sha256"]}
    finally:
        host_vars(NANO, None)
        on_unit(NANO, "rm -rf /srv/model-source", check=False)


def test_corrupt_model_fails_the_unit_before_anything_is_replaced(
    first: Run, corrupt_source: dict[str, Any]
) -> None:
    before = release(NANO)
    run = site(f"fleet-{int(time.time())}-corrupt", "--limit", NANO)
    assert run.rc != 0
    unit = run.unit(NANO)
    assert unit["status"] == "failed"
    why = " ".join(unit["reasons"])
    # the whole reason reaches the report: both full sha256s (it was once cut at 300 chars)
    assert f"expected {corrupt_source['sha256']}, actual " in why, why
    assert re.search(r"actual [0-9a-f]{64}", why), why
    # nothing was replaced: the same model bundle, the same release, and it serves
    llm_link = on_unit(NANO, "readlink /opt/voicefleet/models/current/llm").strip()
    assert llm_link.endswith(corrupt_source["old"])
    assert on_unit(NANO, f"ls /opt/voicefleet/models | grep -c {corrupt_source['sha256']} || true"
                   ).strip() == "0"  # fmt: skip
    assert release(NANO)["current"] == before["current"]
    serves(NANO)


def test_a_unit_without_a_usable_python_fails_preflight_and_keeps_serving(first: Run) -> None:
    """A unit with no CPython 3.11 (its voice_service_python missing, the packaged path too) and
    no package source for one (a JetPack 6 unit without universe) is refused by the preflight
    with what to do, before anything changes."""
    before = release(NANO)
    host_vars(NANO, {"voice_service_python": "/usr/bin/python3.10",
                     "voice_service_python_packaged_path": "/opt/python3.11/bin/python3.11",
                     "voice_service_python_package": "python3.11-site-build"})  # fmt: skip
    try:
        run = site(f"fleet-{int(time.time())}-python", "--limit", NANO)
    finally:
        host_vars(NANO, None)
    assert run.rc != 0
    assert "this unit has no CPython 3.11 (/usr/bin/python3.10," in run.out, run.out[-3000:]
    assert "its apt sources offer no python3.11-site-build" in run.out
    assert "voice_service_python_apt_repo to a site mirror" in run.out
    assert STARTED not in run.out  # the rollout never began
    assert release(NANO)["current"] == before["current"]
    serves(NANO)


def test_rollback_playbook_on_demand_and_back(first: Run) -> None:
    """playbooks/rollback.yml puts a unit on its previous release (here NX2's failed, slow one),
    re-verified; running it again swaps back."""
    now = release(NX2)
    assert now["previous"], "the slow-unit test leaves NX2 with a previous release"
    cmd = ["ansible-playbook", "-i", INVENTORY, "voicefleet.fleet.rollback", "--limit", NX2]
    for want in (now["previous"], now["current"]):
        out = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-4000:]
        assert release(NX2)["current"] == want
        serves(NX2)
