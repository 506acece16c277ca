"""The post-deploy gate: a unit's `voicefleet bench` figures against its group's thresholds.

Thresholds come from the inventory (group_vars `bench_thresholds`, one set per device profile)
and are written to the unit as JSON; the bench role runs `voicefleet bench --thresholds FILE`,
which adds a `gate` section (pass/fail and every reason) to the bench JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

# threshold key -> (figure key, comparison, label, unit)
RULES: dict[str, tuple[str, str, str, str]] = {
    "decode_tps_min": ("decode_tps", ">=", "LLM decode per stream, 1 client (p50)", "tok/s"),
    "ttft_ms_max": ("ttft_ms", "<=", "LLM first token, 1 client (p50)", "ms"),
    "voice_turn_ms_max": ("voice_turn_ms", "<=", "voice turn speech in → speech out (p50)", "ms"),
    "concurrent_errors_max": ("concurrent_errors", "<=", "errors with concurrent clients", ""),
    "concurrent_aggregate_tps_min": (
        "concurrent_aggregate_tps",
        ">=",
        "aggregate tok/s with concurrent clients",
        "tok/s",
    ),
    # what a user hears over /v1/realtime: end of speech -> first reply audio
    "realtime_first_audio_ms_max": (
        "realtime_first_audio_p50_ms", "<=", "realtime end of speech → first audio (p50)", "ms",
    ),
    "realtime_first_audio_p95_ms_max": (
        "realtime_first_audio_p95_ms", "<=", "realtime end of speech → first audio (p95)", "ms",
    ),
    "realtime_concurrent_first_audio_ms_max": (
        "realtime_concurrent_first_audio_p50_ms", "<=",
        "realtime first audio, concurrent sessions (p50)", "ms",
    ),
    "realtime_concurrent_first_audio_p95_ms_max": (
        "realtime_concurrent_first_audio_p95_ms", "<=",
        "realtime first audio, concurrent sessions (p95)", "ms",
    ),
    "realtime_concurrent_errors_max": (
        "realtime_concurrent_errors", "<=", "realtime errors, concurrent sessions", "",
    ),
    "realtime_barge_in_ms_max": (
        "realtime_barge_in_p50_ms", "<=", "realtime barge-in: speech start → reply stopped (p50)",
        "ms",
    ),
    "speech_word_recall_min": ("speech_word_recall", ">=", "TTS → STT word recall", ""),
    # Jetson telemetry during the bench (app/bench/telemetry.py): true = a sample with the
    # throttling gauge at 1 fails the unit (so does telemetry that was not measured)
    "forbid_throttling": (
        "telemetry_throttled_samples", "<=", "throttling samples during the bench", "",
    ),
}  # fmt: skip
DEFAULT_CONCURRENT_CLIENTS = 8


@dataclass
class Check:
    name: str
    label: str
    value: float | None
    limit: float
    op: str
    unit: str
    passed: bool
    reason: str = ""


def _row(rows: list[dict[str, Any]], key: str, value: Any, **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if row.get(key) == value and all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def figures(
    report: dict[str, Any], concurrent_clients: int = DEFAULT_CONCURRENT_CLIENTS
) -> dict[str, Any]:
    """The figures a user cares about, flat, from a bench report (None when not measured)."""
    llm = report.get("llm", [])
    voice = report.get("voice", [])
    one = _row(llm, "clients", 1, target="service")
    many = _row(llm, "clients", concurrent_clients, target="service")
    raw_one = _row(llm, "clients", 1, target="llama-server")
    turn = _row(voice, "clients", 1)
    many_voice = _row(voice, "clients", concurrent_clients)
    turns = report.get("realtime", {}).get("turns", {})
    rt_one, rt_many = turns.get("one_session"), turns.get("concurrent")
    barge = turns.get("barge_in") or {}
    tele = report.get("telemetry") or {}
    recall = [q["recall"] for q in report.get("quality", {}).get("checks", []) if "recall" in q]
    errors: int | None = None
    if many is not None:
        errors = int(many["errors"]) + (int(many_voice["errors"]) if many_voice else 0)
    return {
        "decode_tps": one["stream_tps_p50"] if one else None,
        "ttft_ms": one["ttft_p50_ms"] if one else None,
        "ttft_p95_ms": one["ttft_p95_ms"] if one else None,
        "voice_turn_ms": turn["total_ms_p50"] if turn else None,
        "voice_stt_ms": turn["stt_ms_p50"] if turn else None,
        "voice_llm_ttft_ms": turn["llm_ttft_ms_p50"] if turn else None,
        "voice_llm_total_ms": turn["llm_total_ms_p50"] if turn else None,
        "voice_tts_ms": turn["tts_ms_p50"] if turn else None,
        "concurrent_clients": concurrent_clients,
        "concurrent_aggregate_tps": many["aggregate_tps"] if many else None,
        "concurrent_ttft_p50_ms": many["ttft_p50_ms"] if many else None,
        "concurrent_errors": errors,
        "llama_server_decode_tps": raw_one["stream_tps_p50"] if raw_one else None,
        "errors_total": sum(int(r["errors"]) for r in llm) + sum(int(v["errors"]) for v in voice),
        "realtime_first_audio_p50_ms": rt_one["first_audio_p50_ms"] if rt_one else None,
        "realtime_first_audio_p95_ms": rt_one["first_audio_p95_ms"] if rt_one else None,
        "realtime_sessions": rt_many["sessions"] if rt_many else None,
        "realtime_concurrent_first_audio_p50_ms": (
            rt_many["first_audio_p50_ms"] if rt_many else None
        ),
        "realtime_concurrent_first_audio_p95_ms": (
            rt_many["first_audio_p95_ms"] if rt_many else None
        ),
        "realtime_concurrent_errors": rt_many["errors"] if rt_many else None,
        "realtime_barge_in_p50_ms": barge.get("reaction_p50_ms"),
        "realtime_barge_in_missed": barge.get("missed"),
        "speech_word_recall": recall[0] if recall else None,
        "telemetry_samples": tele.get("samples"),
        "telemetry_max_temp_c": tele.get("max_temperature_c"),
        "telemetry_throttled_samples": (
            tele.get("throttled_samples") if tele.get("available") else None
        ),
    }


def _compare(value: float, op: str, limit: float) -> bool:
    return value >= limit if op == ">=" else value <= limit


def evaluate(report: dict[str, Any], thresholds: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail with one check per threshold set (null thresholds are not checked), plus the
    quality smoke checks when the report has them and `quality_required` is true."""
    clients = int(thresholds.get("concurrent_clients") or DEFAULT_CONCURRENT_CLIENTS)
    figs = figures(report, clients)
    checks: list[Check] = []
    for name, (fig, op, label, unit) in RULES.items():
        limit = thresholds.get(name)
        if name == "forbid_throttling":  # a switch: true checks "no throttled sample"
            limit = 0 if limit else None
        if limit is None:
            continue
        if name.startswith("realtime_concurrent") and figs["realtime_sessions"]:
            label = label.replace("concurrent", f"{figs['realtime_sessions']} concurrent")
        elif "concurrent" in name:
            label = f"{label.replace('concurrent', str(clients) + ' concurrent')}"
        value = figs.get(fig)
        if value is None:
            checks.append(
                Check(name, label, None, float(limit), op, unit, False, f"{label}: not measured")
            )
            continue
        ok = _compare(float(value), op, float(limit))
        u = f" {unit}" if unit else ""
        reason = "" if ok else f"{label}: {value:g}{u} (needs {op} {limit:g}{u})"
        checks.append(Check(name, label, float(value), float(limit), op, unit, ok, reason))

    quality_checks: list[dict[str, Any]] = list(report.get("quality", {}).get("checks", []))
    reasons = [c.reason for c in checks if not c.passed]
    if thresholds.get("realtime_barge_in_ms_max") is not None and figs["realtime_barge_in_missed"]:
        reasons.append(f"realtime barge-in: {figs['realtime_barge_in_missed']} replies were not "
                       "stopped when the user spoke over them")  # fmt: skip
    if thresholds.get("quality_required", True):
        if not quality_checks:
            reasons.append("quality smoke checks: not run")
        reasons += [
            f"quality: {q['name']}: {q['detail']}" for q in quality_checks if not q["passed"]
        ]
    return {
        "passed": not reasons,
        "reasons": reasons,
        "checks": [asdict(c) for c in checks],
        "quality": quality_checks,
        "figures": figs,
        "thresholds": thresholds,
    }


def load_thresholds(path: Path) -> dict[str, Any]:
    """A JSON or YAML file: the thresholds mapping, or {"bench_thresholds": {...}}."""
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of thresholds")
    inner = data.get("bench_thresholds", data)
    if not isinstance(inner, dict):
        raise ValueError(f"{path}: bench_thresholds must be a mapping")
    unknown = set(inner) - set(RULES) - {"concurrent_clients", "quality_required", "profile"}
    if unknown:
        raise ValueError(f"{path}: unknown thresholds {sorted(unknown)}; known: {sorted(RULES)}")
    return dict(inner)


def print_gate(gate: dict[str, Any]) -> None:
    print(f"\ngate: {'PASS' if gate['passed'] else 'FAIL'}")
    for c in gate["checks"]:
        value = "-" if c["value"] is None else f"{c['value']:g}"
        mark = "ok  " if c["passed"] else "FAIL"
        unit = f" {c['unit']}" if c["unit"] else ""
        print(f"  {mark} {c['label']}: {value}{unit} ({c['op']} {c['limit']:g})")
    for q in gate["quality"]:
        print(f"  {'ok  ' if q['passed'] else 'FAIL'} quality {q['name']}: {q['detail']}")
    for r in gate["reasons"]:
        print(f"  why: {r}")
