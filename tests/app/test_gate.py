"""The bench gate: figures from a bench report vs thresholds -> pass/fail with every reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.bench.gate import evaluate, figures, load_thresholds
from app.bench.quality import word_recall

ORIN_NX = {
    "decode_tps_min": 15,
    "ttft_ms_max": 400,
    "voice_turn_ms_max": 1500,
    "concurrent_clients": 8,
    "concurrent_errors_max": 0,
    "concurrent_aggregate_tps_min": None,
    "quality_required": True,
}


def _llm(
    target: str, clients: int, tps: float, ttft: float, agg: float, errors: int = 0
) -> dict[str, Any]:
    return {
        "target": target, "clients": clients, "requests": clients, "errors": errors,
        "wall_s": 1.0, "ttft_p50_ms": ttft, "ttft_p95_ms": ttft * 1.2,
        "stream_tps_p50": tps, "aggregate_tps": agg, "tokens": 64, "error_samples": [],
    }  # fmt: skip


def _voice(clients: int, total: float, errors: int = 0) -> dict[str, Any]:
    v: dict[str, Any] = {"clients": clients, "turns": clients, "errors": errors}
    for stage, ms in (("stt_ms", 300), ("llm_ttft_ms", 90), ("llm_total_ms", 400),
                      ("tts_ms", 120), ("total_ms", total)):  # fmt: skip
        v[f"{stage}_p50"] = ms
        v[f"{stage}_p95"] = ms * 1.3
    return v


def bench(**over: Any) -> dict[str, Any]:
    """A bench report like `voicefleet bench --quality` writes, for a healthy Orin NX."""
    report: dict[str, Any] = {
        "llm": [
            _llm("llama-server", 1, 19.0, 120, 19.0),
            _llm("service", 1, 18.5, 130, 18.4),
            _llm("llama-server", 8, 12.0, 350, 90.0),
            _llm("service", 8, 11.8, 360, 88.0),
        ],
        "voice": [_voice(1, 1100), _voice(8, 3900)],
        "quality": {
            "passed": True,
            "checks": [
                {"name": "llm_answer", "passed": True, "detail": "got 'Paris.'"},
                {"name": "speech_round_trip", "passed": True, "detail": "100% of the words"},
            ],
        },
    }
    report.update(over)
    return report


def test_healthy_unit_passes_with_every_figure_checked() -> None:
    gate = evaluate(bench(), ORIN_NX)
    assert gate["passed"], gate["reasons"]
    assert gate["reasons"] == []
    assert {c["name"] for c in gate["checks"]} == {
        "decode_tps_min", "ttft_ms_max", "voice_turn_ms_max", "concurrent_errors_max",
    }  # fmt: skip
    f = gate["figures"]
    assert (f["decode_tps"], f["ttft_ms"], f["voice_turn_ms"]) == (18.5, 130, 1100)
    assert f["concurrent_aggregate_tps"] == 88.0
    assert f["llama_server_decode_tps"] == 19.0  # the raw server is reported, not gated


def test_slow_decode_fails_with_the_figure_and_the_limit() -> None:
    report = bench()
    report["llm"][1]["stream_tps_p50"] = 9.7
    gate = evaluate(report, ORIN_NX)
    assert not gate["passed"]
    assert gate["reasons"] == [
        "LLM decode per stream, 1 client (p50): 9.7 tok/s (needs >= 15 tok/s)"
    ]


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("llm", 1, "ttft_p50_ms"), 401.0, "first token"),
        (("voice", 0, "total_ms_p50"), 1501.0, "voice turn"),
        (("llm", 3, "errors"), 1, "8 concurrent"),
        (("voice", 1, "errors"), 2, "8 concurrent"),
    ],
)
def test_each_threshold_can_fail_on_its_own(
    path: tuple[str, int, str], value: float, needle: str
) -> None:
    report = bench()
    section, index, key = path
    report[section][index][key] = value
    gate = evaluate(report, ORIN_NX)
    assert not gate["passed"]
    assert len(gate["reasons"]) == 1 and needle in gate["reasons"][0]


def test_limits_are_inclusive() -> None:
    report = bench()
    report["llm"][1]["stream_tps_p50"] = 15.0
    report["llm"][1]["ttft_p50_ms"] = 400.0
    report["voice"][0]["total_ms_p50"] = 1500.0
    assert evaluate(report, ORIN_NX)["passed"]


def test_missing_measurement_fails_instead_of_passing() -> None:
    report = bench(voice=[])
    gate = evaluate(report, ORIN_NX)
    assert not gate["passed"]
    assert "voice turn speech in → speech out (p50): not measured" in gate["reasons"]


def test_quality_failures_fail_the_gate_unless_not_required() -> None:
    report = bench()
    report["quality"]["checks"][0] = {"name": "llm_answer", "passed": False, "detail": "got 'Lyon'"}
    assert evaluate(report, ORIN_NX)["reasons"] == ["quality: llm_answer: got 'Lyon'"]
    assert evaluate(report, {**ORIN_NX, "quality_required": False})["passed"]
    no_quality = bench()
    del no_quality["quality"]
    assert evaluate(no_quality, ORIN_NX)["reasons"] == ["quality smoke checks: not run"]


def test_null_thresholds_are_not_checked_and_aggregate_can_be() -> None:
    th = {**ORIN_NX, "ttft_ms_max": None, "concurrent_aggregate_tps_min": 100}
    gate = evaluate(bench(), th)
    names = [c["name"] for c in gate["checks"]]
    assert "ttft_ms_max" not in names
    assert gate["reasons"] == [
        "aggregate tok/s with 8 concurrent clients: 88 tok/s (needs >= 100 tok/s)"
    ]


def test_concurrency_level_comes_from_the_thresholds() -> None:
    report = bench()
    report["llm"][3]["clients"] = 4
    report["voice"][1]["clients"] = 4
    assert figures(report, 8)["concurrent_errors"] is None
    assert evaluate(report, {**ORIN_NX, "concurrent_clients": 4})["passed"]


def test_thresholds_files_json_yaml_and_unknown_keys(tmp_path: Path) -> None:
    j = tmp_path / "t.json"
    j.write_text(json.dumps(ORIN_NX))
    assert load_thresholds(j) == ORIN_NX
    y = tmp_path / "t.yml"
    y.write_text("bench_thresholds:\n  decode_tps_min: 15\n  ttft_ms_max: 400\n")
    assert load_thresholds(y) == {"decode_tps_min": 15, "ttft_ms_max": 400}
    bad = tmp_path / "bad.yml"
    bad.write_text("decode_tps: 15\n")
    with pytest.raises(ValueError, match="unknown thresholds"):
        load_thresholds(bad)


def test_evaluate_does_not_modify_the_report() -> None:
    report = bench()
    before = copy.deepcopy(report)
    evaluate(report, ORIN_NX)
    assert report == before


def test_speech_round_trip_word_recall() -> None:
    said = "The quick brown fox jumps over the lazy dog."
    assert word_recall(said, "the quick brown fox jumps over the lazy dog") == 1.0
    assert word_recall(said, "The quick brown fox jumped over a lazy dog.") == pytest.approx(
        8 / 9
    )  # "jumps" missed
    assert word_recall(said, "") == 0.0


def _turns(one_p50: float, many_p95: float, errors: int = 0) -> dict[str, Any]:
    """The `realtime.turns` section `voicefleet bench --realtime-turns N` writes."""
    return {"turns": {
        "one_session": {"first_audio_p50_ms": one_p50, "first_audio_p95_ms": one_p50 * 1.2},
        "concurrent": {"sessions": 8, "errors": errors, "first_audio_p50_ms": many_p95 * 0.8,
                       "first_audio_p95_ms": many_p95},
    }}  # fmt: skip


REALTIME = {
    **ORIN_NX,
    "realtime_first_audio_ms_max": 1500,
    "realtime_concurrent_first_audio_p95_ms_max": 3000,
    "realtime_concurrent_errors_max": 0,
}


def test_what_users_hear_over_realtime_is_gated() -> None:
    assert evaluate(bench(realtime=_turns(640, 2500)), REALTIME)["passed"]
    slow = evaluate(bench(realtime=_turns(1800, 2500)), REALTIME)
    assert slow["reasons"] == [
        "realtime end of speech → first audio (p50): 1800 ms (needs <= 1500 ms)"
    ]
    crowded = evaluate(bench(realtime=_turns(640, 3200, errors=1)), REALTIME)
    assert [r.split(":")[0] for r in crowded["reasons"]] == [
        "realtime first audio, 8 concurrent sessions (p95)",
        "realtime errors, 8 concurrent sessions",
    ]
    # asked for and not measured: a failure, not a pass
    assert not evaluate(bench(), REALTIME)["passed"]


def test_barge_in_and_word_recall_are_gated() -> None:
    th = {**ORIN_NX, "realtime_barge_in_ms_max": 500, "speech_word_recall_min": 0.8}
    turns = _turns(640, 2500)
    turns["turns"]["barge_in"] = {"rounds": 3, "reaction_ms": [310.0, 290.0, 350.0],
                                  "missed": 0, "reaction_p50_ms": 310.0}  # fmt: skip
    quality = copy.deepcopy(bench()["quality"])
    quality["checks"][1]["recall"] = 1.0
    ok = evaluate(bench(realtime=turns, quality=quality), th)
    assert ok["passed"], ok["reasons"]
    assert ok["figures"]["realtime_barge_in_p50_ms"] == 310.0
    assert ok["figures"]["speech_word_recall"] == 1.0

    slow = copy.deepcopy(turns)
    slow["turns"]["barge_in"].update(reaction_ms=[900.0], missed=2, reaction_p50_ms=900.0)
    quality["checks"][1]["recall"] = 0.667
    bad = evaluate(bench(realtime=slow, quality=quality), th)
    assert bad["reasons"] == [
        "realtime barge-in: speech start → reply stopped (p50): 900 ms (needs <= 500 ms)",
        "TTS → STT word recall: 0.667 (needs >= 0.8)",
        "realtime barge-in: 2 replies were not stopped when the user spoke over them",
    ]
    # asked for, not measured (no --realtime-turns, no recall figure): failures
    missing = evaluate(bench(), th)["reasons"]
    assert [r.split(":")[0] for r in missing] == [
        "realtime barge-in", "TTS → STT word recall",
    ]  # fmt: skip


def test_every_inventory_threshold_key_is_known_to_the_gate(tmp_path: Path) -> None:
    """The inventories' thresholds (sim and example) load: a misspelt key would raise."""
    root = Path(__file__).resolve().parents[2]
    files = sorted(root.glob("inventory/*/group_vars/*/bench.yml"))
    assert len(files) >= 3
    for path in files:
        th = load_thresholds(path)
        assert th["forbid_throttling"] is True and th["realtime_first_audio_ms_max"] > 0, path
    bad = tmp_path / "bad.yml"
    bad.write_text("bench_thresholds:\n  realtime_first_audio_ms_mx: 1500\n")
    with pytest.raises(ValueError, match="realtime_first_audio_ms_mx"):
        load_thresholds(bad)
