"""The gate on what users hear and the Jetson telemetry under the bench (issues 19 and 21), on the
fleet scenario's units (after test_fleet.py, same bring-up, before test_monitoring.py).

Asserted: every unit of test_fleet's first rollout has realtime first audio at 1 and at
llm.parallel sessions, barge-in reaction, TTS -> STT word recall and telemetry recorded during
its bench, within its group's thresholds; the re-run's report shows them beside the previous
run's. Then one rollout with two faults: a unit whose new release answers slowly (its STT
slowed ~10x: 256 threads on 2 cores, beam 10) fails on what users hear and is rolled back, and
a unit that throttles under the bench (the fake tegrastats heated through its state file) fails
the gate that forbids throttling and is rolled back; both serve again on their old release.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.fleet.test_fleet import (
    NANO,
    NX1,
    NX2,
    REPORTS,
    host_vars,
    on_unit,
    pytestmark,  # noqa: F401  (infra + slow, skipped without the fleet's inventory)
    release,
    serves,
    site,
)

HEAT = "/run/fake-l4t/tegrastats.state"
SLOW_STT = {"voice_service_stt_cpu_threads": 256,
            "voice_service_settings_extra": {"stt": {"beam_size": 10}}}  # fmt: skip
HEARD = "## What users hear, and telemetry under the bench (previous run in [ ])"


def _run_dir(suffix: str) -> Path:
    runs = sorted(p for p in REPORTS.glob(f"fleet-*-{suffix}") if p.is_dir())
    assert runs, f"no {suffix} run of test_fleet.py under {REPORTS}"
    return runs[-1]


def _report(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "fleet-report.json").read_text())
    return data


def test_every_unit_was_gated_on_what_users_hear_and_its_telemetry() -> None:
    first = _report(_run_dir("first"))
    assert {u["host"] for u in first["units"]} == {NX1, NX2, NANO}
    for unit in first["units"]:
        f, th = unit["gate"]["figures"], unit["thresholds"]
        assert unit["status"] == "passed", unit["reasons"]
        assert 0 < f["realtime_first_audio_p50_ms"] <= th["realtime_first_audio_ms_max"]
        many_p95, many_max = (
            f["realtime_concurrent_first_audio_p95_ms"],
            th["realtime_concurrent_first_audio_p95_ms_max"],
        )
        assert 0 < many_p95 <= many_max
        assert f["realtime_sessions"] == 8 and f["realtime_concurrent_errors"] == 0
        assert 0 < f["realtime_barge_in_p50_ms"] <= th["realtime_barge_in_ms_max"]
        assert f["speech_word_recall"] >= th["speech_word_recall_min"] > 0
        # the exporter (jetson_telemetry, in the rollout) was sampled through the bench
        assert f["telemetry_samples"] >= 10 and f["telemetry_throttled_samples"] == 0
        assert 20 < f["telemetry_max_temp_c"] < 99
        print(f"\n{unit['host']}: first audio {f['realtime_first_audio_p50_ms']:.0f} ms (1), "
              f"{f['realtime_concurrent_first_audio_p95_ms']:.0f} ms p95 (8), barge-in "
              f"{f['realtime_barge_in_p50_ms']:.0f} ms, recall {f['speech_word_recall']}, "
              f"max {f['telemetry_max_temp_c']} C")  # fmt: skip
    # the re-run (figures reused) shows them with the first run's beside them
    second = _run_dir("second")
    md = (second / "fleet-report.md").read_text()
    assert HEARD in md
    for host in (NX1, NX2, NANO):
        row = next(line for line in md.splitlines() if line.startswith(f"| {host} | 8 |"))
        assert row.count("[") >= 6 and row.endswith("| none (forbidden) |"), row
    figs = _report(second)["comparison"][NX1]["figures"]
    assert figs["realtime_first_audio_p50_ms"]["before"] > 0


def test_a_slow_release_and_a_throttling_unit_fail_the_gate_and_are_rolled_back() -> None:
    before = {host: release(host)["current"] for host in (NX1, NANO)}
    host_vars(NX1, SLOW_STT)
    host_vars(NANO, {"voice_service_log_level": "debug"})  # a new release on the hot unit
    on_unit(NANO, f"mkdir -p /run/fake-l4t && echo tj_c=101.5 > {HEAT}")
    try:
        # one batch of both (a batch whose every unit fails ends the play, whatever
        # max_fail_percentage says: a lone canary would leave the other unit not reached)
        run = site(f"fleet-{int(time.time())}-heard", "--limit", f"{NX1},{NANO}",
                   "-e", "rollout_batches=[2]")  # fmt: skip
    finally:
        host_vars(NX1, None)
        host_vars(NANO, None)
        on_unit(NANO, f"rm -f {HEAT}", check=False)
    assert run.rc != 0
    assert run.recap[NX1]["rescued"] == 1 and run.recap[NANO]["rescued"] == 1, run.out[-4000:]

    slow = run.unit(NX1)
    f, th = slow["gate"]["figures"], slow["thresholds"]
    assert slow["status"] == "failed" and slow["bench_source"] == "measured"
    assert f["realtime_first_audio_p50_ms"] > th["realtime_first_audio_ms_max"]
    assert any(r.startswith("realtime end of speech → first audio (p50): ")
               for r in slow["reasons"]), slow["reasons"]  # fmt: skip
    # its llama-server answers as soon as ever (decode/s is not asserted: on the shared 2 cores
    # it swings around the sim's 40 tok/s limit with the load, for healthy units too)
    assert f["ttft_ms"] <= th["ttft_ms_max"] and f["telemetry_throttled_samples"] == 0

    hot = run.unit(NANO)
    f = hot["gate"]["figures"]
    assert hot["status"] == "failed" and hot["bench_source"] == "measured"
    assert f["telemetry_throttled_samples"] >= 1 and f["telemetry_max_temp_c"] >= 101.5
    assert f"throttling samples during the bench: {f['telemetry_throttled_samples']} (needs <= 0)" \
        in hot["reasons"], hot["reasons"]  # fmt: skip

    for host, unit in ((NX1, slow), (NANO, hot)):
        assert unit["rolled_back_to"] == before[host]
        assert unit["failed_release"] not in (None, before[host])
        assert release(host)["current"] == before[host]
        serves(host)
    md = (REPORTS / run.run_id / "fleet-report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {NANO} | 8 |"))
    assert row.endswith("| SEEN (forbidden) |"), row
    print(f"\nslowed STT: first audio {slow['gate']['figures']['realtime_first_audio_p50_ms']:.0f}"
          f" ms; throttling unit: {f['telemetry_throttled_samples']} throttled samples, "
          f"site.yml {run.seconds:.0f} s")  # fmt: skip
