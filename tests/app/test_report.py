"""`voicefleet report`: unit records of a rollout -> JSON, Markdown and HTML with plots,
compared with the previous run; units without a result are reported, not dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.bench.gate import evaluate
from app.cli import main
from app.report import build
from tests.app.test_gate import ORIN_NX, bench

SIM = {**ORIN_NX, "decode_tps_min": 40, "ttft_ms_max": 600, "voice_turn_ms_max": 3000}


def record(host: str, status: str, tps: float, release: str, **extra: Any) -> dict[str, Any]:
    report = bench()
    report["llm"][1]["stream_tps_p50"] = tps
    gate = evaluate(report, SIM)
    return {
        "host": host,
        "profile": "orin_nx_16gb",
        "status": status,
        "reasons": gate["reasons"],
        "facts": {"sku": "p3767-0000", "power_mode": "MAXN_SUPER"},
        "release": {"id": release},
        "thresholds": SIM,
        "gate": gate,
        "bench": report,
        **extra,
    }


def write_run(root: Path, run_id: str, records: list[dict[str, Any]]) -> Path:
    run = root / run_id
    (run / "units").mkdir(parents=True)
    for r in records:
        (run / "units" / f"{r['host']}.json").write_text(json.dumps(r))
    return run


def test_report_files_summary_and_reasons(tmp_path: Path) -> None:
    run = write_run(
        tmp_path,
        "20261125T060000Z",
        [
            record("nx-1", "passed", 120.0, "aaa111"),
            record(
                "nx-2", "failed", 14.2, "aaa111", rolled_back_to="aaa111", failed_release="bbb222"
            ),
            {"host": "nano-1", "status": "started", "reasons": []},
        ],
    )
    report = build(run, ["nx-1", "nx-2", "nano-1", "nano-2"])
    assert report["summary"] == {
        "units": 4, "passed": 1, "failed": 1, "no_result": 2,
        "by_status": {"passed": 1, "failed": 1, "unreachable": 0, "started": 1, "not_reached": 1},
    }  # fmt: skip
    units = {u["host"]: u for u in report["units"]}
    assert units["nano-2"]["status"] == "not_reached"
    assert "no result came back" in units["nano-1"]["reasons"][0]
    assert units["nx-2"]["reasons"] == [
        "LLM decode per stream, 1 client (p50): 14.2 tok/s (needs >= 40 tok/s)"
    ]
    on_disk = json.loads((run / "fleet-report.json").read_text())
    assert on_disk["summary"] == report["summary"]
    md = (run / "fleet-report.md").read_text()
    assert "1 of 4 units passed" in md
    assert "| nx-2 | orin_nx_16gb | FAILED (rolled back) | 14.2 (≥ 40)" in md
    assert "aaa111 (rolled back from bbb222)" in md
    html = (run / "fleet-report.html").read_text()
    assert "<img alt='figures vs thresholds' src='data:image/png;base64," in html
    assert (run / "figures.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "latest").resolve() == run.resolve()


def test_compares_with_the_previous_run(tmp_path: Path) -> None:
    first = write_run(tmp_path, "20261125T060000Z", [record("nx-1", "passed", 100.0, "aaa111")])
    build(first, [])
    second = write_run(tmp_path, "20261125T070000Z", [record("nx-1", "passed", 125.0, "ccc333")])
    report = build(second, [])
    assert report["previous_run"] == "20261125T060000Z"
    c = report["comparison"]["nx-1"]
    assert c["release_changed"] and c["release_before"] == "aaa111"
    assert c["figures"]["decode_tps"] == {"now": 125.0, "before": 100.0, "change_pct": 25.0}
    md = (second / "fleet-report.md").read_text()
    assert "## Compared with run 20261125T060000Z" in md
    assert "decode_tps 100 → 125 (+25.0%)" in md
    # a later run does not change what an earlier one compared with
    assert json.loads((first / "fleet-report.json").read_text())["previous_run"] is None


def test_cli_prints_summary_and_path_and_exit_code(tmp_path: Path, capsys: Any) -> None:
    run = write_run(tmp_path, "r1", [record("nx-1", "failed", 10.0, "a")])
    assert main(["report", str(run), "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert "0 of 1 units passed" in out
    assert f"fleet report: {run / 'fleet-report.html'}" in out
    assert not (run / "figures.png").exists()
    assert main(["report", str(run), "--no-plots", "--exit-zero", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_the_previous_run_is_the_last_reported_whatever_the_names(tmp_path: Path) -> None:
    """Run ids are the user's (-e rollout_run_id=…): `fleet-…` first, `entry-…` later."""
    first = write_run(tmp_path, "fleet-1764640000-first", [record("nx-1", "passed", 100.0, "a")])
    build(first, [])
    again = write_run(tmp_path, "entry-1764640100-site", [record("nx-1", "passed", 90.0, "a")])
    assert build(again, [])["previous_run"] == first.name
    third = write_run(tmp_path, "adhoc", [record("nx-1", "passed", 95.0, "a")])
    assert build(third, [])["previous_run"] == again.name
    # built again later, a run still compares with the run it was compared with at first
    assert build(again, [])["previous_run"] == first.name
    assert build(first, [])["previous_run"] is None


def test_realtime_first_audio_is_reported_with_its_limit_and_the_previous_run(
    tmp_path: Path,
) -> None:
    from tests.app.test_gate import REALTIME, _turns

    def unit(run_id: str, first_audio: float) -> Path:
        rec = record("nx-1", "passed", 100.0, "aaa111")
        rec["bench"]["realtime"] = _turns(first_audio, 2500)
        rec["thresholds"] = {**SIM, **{k: v for k, v in REALTIME.items() if "realtime" in k}}
        rec["gate"] = evaluate(rec["bench"], rec["thresholds"])
        return write_run(tmp_path, run_id, [rec])

    build(unit("20261201T060000Z", 800.0), [])
    second = unit("20261201T070000Z", 640.0)
    report = build(second, [])
    md = (second / "fleet-report.md").read_text()
    assert "| 640 (≤ 1500), 2500 (≤ 3000) (8 at once) |" in md
    figs = report["comparison"]["nx-1"]["figures"]
    assert figs["realtime_first_audio_p50_ms"] == {"now": 640.0, "before": 800.0,
                                                   "change_pct": -20.0}  # fmt: skip


def test_what_users_hear_and_telemetry_table_with_the_previous_run(tmp_path: Path) -> None:
    from tests.app.test_gate import REALTIME, _turns

    th = {**SIM, **{k: v for k, v in REALTIME.items() if "realtime" in k},
          "realtime_barge_in_ms_max": 2000, "forbid_throttling": True}  # fmt: skip

    def unit(run_id: str, first_audio: float, barge: float, throttled: int) -> Path:
        rec = record("nx-1", "passed", 100.0, "aaa111")
        rec["bench"]["realtime"] = _turns(first_audio, 2500)
        rec["bench"]["realtime"]["turns"]["barge_in"] = {"missed": 0, "reaction_p50_ms": barge}
        rec["bench"]["telemetry"] = {"available": True, "samples": 60, "max_temperature_c": 71.5,
                                     "throttled_samples": throttled}  # fmt: skip
        rec["thresholds"] = th
        rec["gate"] = evaluate(rec["bench"], th)
        rec["status"] = "passed" if rec["gate"]["passed"] else "failed"
        rec["reasons"] = rec["gate"]["reasons"]
        return write_run(tmp_path, run_id, [rec])

    build(unit("20261201T060000Z", 800.0, 420.0, 0), [])
    second = unit("20261201T070000Z", 640.0, 380.0, 3)
    report = build(second, [])
    md = (second / "fleet-report.md").read_text()
    assert "## What users hear, and telemetry under the bench (previous run in [ ])" in md
    row = next(line for line in md.splitlines() if line.startswith("| nx-1 | 8 |"))
    assert "| 640 (≤ 1500) [800] |" in row and "| 380 (≤ 2000) [420] |" in row
    assert row.endswith("| 71.5 [71.5] | 3 [0] | SEEN (forbidden) |")
    assert report["units"][0]["status"] == "failed"
    assert "throttling samples during the bench: 3 (needs <= 0)" in report["units"][0]["reasons"]
    figs = report["comparison"]["nx-1"]["figures"]
    assert figs["realtime_barge_in_p50_ms"]["before"] == 420.0
    assert figs["telemetry_throttled_samples"] == {"now": 3, "before": 0, "change_pct": None}
