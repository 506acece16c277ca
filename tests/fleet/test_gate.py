"""The gate on what users hear and the Jetson telemetry under the bench (issues 19 and 21), on the
fleet scenario's deploys (conftest.py: the first rollout, the re-run, the rollout with faults;
no deploy of its own).

Asserted: every unit of the first rollout has realtime first audio at 1 and at llm.parallel
sessions, barge-in reaction, TTS -> STT word recall and telemetry recorded during its bench,
within its group's thresholds; the re-run's report shows them beside the previous run's. In
the rollout with faults, the unit whose new release transcribes ~10x slower fails on what users
hear, the unit that runs hot under the bench (the fake tegrastats past its 99 C trip) fails the
gate that forbids throttling; both are rolled back and serve again; the canary passes.
"""

from __future__ import annotations

from tests.fleet.runner import (
    FLEET_MARKS,
    NANO,
    NX1,
    NX2,
    REPORTS,
    Faults,
    Run,
    release,
    serves,
)

HEARD = "## What users hear, and telemetry under the bench (previous run in [ ])"

pytestmark = FLEET_MARKS


def _row(run: Run, host: str) -> str:
    md = (REPORTS / run.run_id / "fleet-report.md").read_text()
    assert HEARD in md, md
    return next(line for line in md.splitlines() if line.startswith(f"| {host} | 8 |"))


def test_every_unit_was_gated_on_what_users_hear_and_its_telemetry(first: Run, again: Run) -> None:
    for unit in first.report["units"]:
        f, th = unit["gate"]["figures"], unit["thresholds"]
        assert unit["status"] == "passed", unit["reasons"]
        assert 0 < f["realtime_first_audio_p50_ms"] <= th["realtime_first_audio_ms_max"]
        assert (
            0 < f["realtime_concurrent_first_audio_p95_ms"]
            <= th["realtime_concurrent_first_audio_p95_ms_max"]
        )  # fmt: skip
        assert f["realtime_sessions"] == 8 and f["realtime_concurrent_errors"] == 0
        assert 0 < f["realtime_barge_in_p50_ms"] <= th["realtime_barge_in_ms_max"]
        assert f["realtime_barge_in_missed"] == 0
        assert f["speech_word_recall"] >= th["speech_word_recall_min"] > 0
        # the exporter (jetson_telemetry, in the rollout) was sampled through the bench
        assert f["telemetry_samples"] >= 10 and f["telemetry_throttled_samples"] == 0
        assert 20 < f["telemetry_max_temp_c"] < 99
        print(f"\n{unit['host']}: first audio {f['realtime_first_audio_p50_ms']:.0f} ms (1), "
              f"{f['realtime_concurrent_first_audio_p50_ms']:.0f} / "
              f"{f['realtime_concurrent_first_audio_p95_ms']:.0f} ms p50/p95 (8), barge-in "
              f"{f['realtime_barge_in_p50_ms']:.0f} ms, recall {f['speech_word_recall']}, "
              f"{f['telemetry_samples']} telemetry samples, max {f['telemetry_max_temp_c']} C, "
              f"{f['telemetry_throttled_samples']} throttled")  # fmt: skip
    # the re-run (figures reused) shows them with the previous run's beside them
    assert again.rc == 0 and again.report["previous_run"]
    for host in (NX1, NX2, NANO):
        row = _row(again, host)
        assert row.count("[") >= 6 and row.endswith("| none (forbidden) |"), row
    figs = again.report["comparison"][NX1]["figures"]
    assert figs["realtime_first_audio_p50_ms"]["before"] > 0
    assert figs["realtime_barge_in_p50_ms"]["before"] > 0


def test_a_slow_release_and_a_throttling_unit_fail_the_gate_and_are_rolled_back(
    faults: Faults,
) -> None:
    run = faults.run
    assert run.rc != 0
    assert run.recap[NX1]["rescued"] == 1 and run.recap[NX2]["rescued"] == 1, run.out[-4000:]
    assert run.unit(NANO)["status"] == "passed"  # the canary: nothing changed, nothing failed

    slow = run.unit(NX1)
    f, th = slow["gate"]["figures"], slow["thresholds"]
    assert slow["status"] == "failed" and slow["bench_source"] == "measured"
    assert f["realtime_first_audio_p50_ms"] > th["realtime_first_audio_ms_max"]
    assert any(r.startswith("realtime end of speech → first audio (p50): ")
               for r in slow["reasons"]), slow["reasons"]  # fmt: skip
    # its llama-server answers as soon as ever (decode/s is not asserted: on the shared 2 cores
    # it swings around the sim's limit with the load, for healthy units too)
    assert f["ttft_ms"] <= th["ttft_ms_max"] and f["telemetry_throttled_samples"] == 0

    hot = run.unit(NX2)  # also slowed (test_fleet.py): its throttling is a check of its own
    f = hot["gate"]["figures"]
    assert hot["status"] == "failed" and hot["bench_source"] == "measured"
    assert f["telemetry_throttled_samples"] >= 1 and f["telemetry_max_temp_c"] >= 101.5
    check = next(c for c in hot["gate"]["checks"] if c["name"] == "forbid_throttling")
    assert not check["passed"] and check["value"] == f["telemetry_throttled_samples"]
    assert f"throttling samples during the bench: {f['telemetry_throttled_samples']:g} (needs " \
        "<= 0)" in hot["reasons"], hot["reasons"]  # fmt: skip
    assert _row(run, NX2).endswith("| SEEN (forbidden) |")

    for host, unit in ((NX1, slow), (NX2, hot)):
        assert unit["rolled_back_to"] == faults.before[host]
        assert unit["failed_release"] not in (None, faults.before[host])
        assert release(host)["current"] == faults.before[host]
        serves(host)
    print(f"\nslowed STT: first audio {slow['gate']['figures']['realtime_first_audio_p50_ms']:.0f}"
          f" ms (1 session), {slow['gate']['figures']['realtime_concurrent_first_audio_p95_ms']}"
          f" ms p95 (8); hot unit: {f['telemetry_throttled_samples']} throttled samples at "
          f"{f['telemetry_max_temp_c']} C; site.yml {run.seconds:.0f} s")  # fmt: skip
