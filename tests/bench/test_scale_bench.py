"""bench/scale.py at the smallest size: one unit brought up, deployed by site.yml (the light
variant), deployed again (no change), destroyed; every figure is written, none is asserted
against a speed (the figures are docs/scale.md's, from a full run).

Needs root and systemd-nspawn (the test fleet: host scale-01, 10.214.0.101); traffic stays on
the test bridge, but for the apt package the llamacpp role installs on the unit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import NSPAWN_MARKS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    *NSPAWN_MARKS,
    # a full first deploy of one unit plus a re-run: not measured yet on the 2-core CI machine,
    # so not in `make test` until it is (VOICEFLEET_SCALE_BENCH_TEST=1 runs it)
    pytest.mark.skipif(
        os.environ.get("VOICEFLEET_SCALE_BENCH_TEST") != "1",
        reason="opt-in: VOICEFLEET_SCALE_BENCH_TEST=1 (a full deploy of one unit)",
    ),
]


def test_scale_bench_measures_one_unit(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run = subprocess.run(
        [sys.executable, "bench/scale.py", "--units", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    (entry,) = report["runs"]
    first, again = entry["first"], entry["again"]
    assert entry["units"] == 1
    # the first deploy changed the unit and sent it the models, the artifact and the wheelhouse
    assert first["changed_per_unit"]["scale-01"] > 0
    assert first["bytes_to_unit"]["min"] > 200 * 2**20
    # the second changed nothing and sent a small fraction of that
    assert again["changed_per_unit"] == {"scale-01": 0}
    assert again["bytes_to_unit"]["max"] < first["bytes_to_unit"]["min"] / 10
    for r in (first, again):
        assert r["controller_cpu_s"] > 0 and r["wall_s"] > 0
        # the cgroup counts what the reaped process tree does not (the ssh masters)
        assert r["controller_cpu_s"] >= r["rusage_tree_cpu_s"] * 0.9
        plays = [p["play"] for p in r["phases"]["plays"]]
        assert plays[0].startswith("Preflight") and plays[-1] == "Fleet report"
        roles = {p["role"] for play in r["phases"]["plays"] for p in play["phases"]}
        assert {"models", "llamacpp", "voice_service", "release"} <= roles
    # nothing of the bench's is left: its host is gone
    hosts = subprocess.run([str(ROOT / "scripts/nspawn/nspawnctl"), "list", "--json"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "scale-01" not in {h["name"] for h in json.loads(hosts)}
