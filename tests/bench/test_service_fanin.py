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
    subprocess.run(
        [sys.executable, "bench/service_fanin.py", "--bursts", "2", "--json", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["bursts"] == 2 and report["requests_per_burst"] == 8
    assert report["service_cpu_ms_per_request"] > 0
    for figure in ("last_arrival_p50_ms", "arrival_spread_p50_ms"):
        assert set(report[figure]) == {"direct", "service"}
        assert all(v >= 0 for v in report[figure].values())
    # (the script exits non-zero unless all 8 of every burst reached the upstream)
    assert report["last_arrival_p50_ms"]["service"] > 0
