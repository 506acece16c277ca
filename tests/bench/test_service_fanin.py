"""bench/service_fanin.py runs end to end (the real service in front of its stand-in upstream)
and writes every figure; no timing is asserted (figures are printed and written as JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fanin_bench_measures_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "fanin.json"
    run = subprocess.run(
        [sys.executable, "bench/service_fanin.py", "--bursts", "2", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["bursts"] == 2 and report["requests_per_burst"] == 8
    services = set(report["service_cpu_ms_per_request"])
    assert "now" in services and len(services) == 2  # this tree and the --before revision
    assert all(v > 0 for v in report["service_cpu_ms_per_request"].values())
    for figure in ("last_arrival_p50_ms", "arrival_spread_p50_ms"):
        assert set(report[figure]) == {"direct", *services}
        assert all(v >= 0 for v in report[figure].values())
    # (the script exits non-zero unless all 8 of every burst reached the upstream)
    assert all(report["last_arrival_p50_ms"][name] > 0 for name in services)
