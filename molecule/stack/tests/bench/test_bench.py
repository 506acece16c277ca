"""The gate as the bench role leaves it: the passing result kept with the release it measured
(figures within the sim thresholds), and after side_effect's impossible threshold the failed
release marked, the unit back on the release it ran before, serving."""

import json
import os
import sys
from pathlib import Path

import testinfra.utils.ansible_runner
import yaml

sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
from tests.fleet.runner import release, serves

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
THRESHOLDS = yaml.safe_load((ROOT / "inventory/sim/group_vars/all/bench.yml").read_text())[
    "bench_thresholds"
]
RELEASES = "/opt/voicefleet/releases"


def test_passing_result_is_kept_with_the_release_it_measured(host):
    now = release(host.backend.get_hostname())
    bench = json.loads(host.file(f"{RELEASES}/{now['current']}/bench.json").content_string)
    gate = bench["gate"]
    assert gate["passed"] and gate["reasons"] == []
    assert gate["thresholds"] == THRESHOLDS
    f = gate["figures"]
    assert f["decode_tps"] >= THRESHOLDS["decode_tps_min"]
    assert 0 < f["ttft_ms"] <= THRESHOLDS["ttft_ms_max"]
    assert 0 < f["voice_turn_ms"] <= THRESHOLDS["voice_turn_ms_max"]
    assert f["concurrent_clients"] == THRESHOLDS["concurrent_clients"]
    assert f["concurrent_errors"] == 0
    assert [q["passed"] for q in gate["quality"]] == [True, True]


def test_failed_gate_marks_its_release_and_the_unit_runs_the_one_before(host):
    name = host.backend.get_hostname()
    now = release(name)
    failed = now["previous"]
    assert failed and failed != now["current"]
    note = json.loads(host.file(f"{RELEASES}/{failed}/failed.json").content_string)
    assert note["back_to"] == now["current"]
    # the failed release was measured (its result is on the unit) but not kept with it
    measured = json.loads(host.file(f"/var/lib/voicefleet-bench/{failed}.json").content_string)
    assert not measured["gate"]["passed"]
    assert any("decode per stream" in r for r in measured["gate"]["reasons"])
    assert not host.file(f"{RELEASES}/{failed}/bench.json").exists
    # the unit is back on the settings it ran before the change, byte for byte, and serves
    path = "/etc/voicefleet/voicefleet.yaml"
    assert host.file(path).sha256sum == now["release"]["components"]["config"][path]
    assert yaml.safe_load(host.file(path).content_string)["server"]["log_level"] == "info"
    serves(name)
