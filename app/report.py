"""`voicefleet report`: the fleet report of a rollout, on the controller.

Input: a run directory (out/fleet-reports/<run-id>/) whose units/<host>.json records the site
playbook wrote, one per unit (facts, release, bench figures, gate, status and why).
Output, in the same directory: fleet-report.json (machine-readable), fleet-report.md (the
summary), fleet-report.html with plots (matplotlib) of each unit's figures against its
thresholds, compared with the previous run in the same parent directory; `latest` points at it.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import time
from pathlib import Path
from typing import Any

# figure key, label, unit, threshold key, better
PLOTTED: list[tuple[str, str, str, str, str]] = [
    ("decode_tps", "LLM decode, 1 client", "tok/s", "decode_tps_min", "higher"),
    ("ttft_ms", "LLM first token, 1 client", "ms", "ttft_ms_max", "lower"),
    ("voice_turn_ms", "voice turn, speech in → out", "ms", "voice_turn_ms_max", "lower"),
    ("concurrent_aggregate_tps", "aggregate tok/s, concurrent", "tok/s", "", "higher"),
    # what a user hears over /v1/realtime (voicefleet bench --realtime-turns)
    ("realtime_first_audio_p50_ms", "realtime first audio, 1 session", "ms",
     "realtime_first_audio_ms_max", "lower"),
    ("realtime_concurrent_first_audio_p95_ms", "realtime first audio p95, concurrent", "ms",
     "realtime_concurrent_first_audio_p95_ms_max", "lower"),
]  # fmt: skip
# What users hear and the unit's telemetry under the bench: a table of its own, each figure with
# the previous run's beside it. figure key, column, threshold key
HEARD: list[tuple[str, str, str]] = [
    ("realtime_first_audio_p50_ms", "first audio p50 ms, 1 session", "realtime_first_audio_ms_max"),
    ("realtime_first_audio_p95_ms", "p95", "realtime_first_audio_p95_ms_max"),
    ("realtime_concurrent_first_audio_p50_ms", "p50, N at once",
     "realtime_concurrent_first_audio_ms_max"),
    ("realtime_concurrent_first_audio_p95_ms", "p95, N at once",
     "realtime_concurrent_first_audio_p95_ms_max"),
    ("realtime_barge_in_p50_ms", "barge-in → stopped ms", "realtime_barge_in_ms_max"),
    ("speech_word_recall", "TTS → STT word recall", "speech_word_recall_min"),
    ("telemetry_max_temp_c", "max °C under the bench", ""),
    ("telemetry_throttled_samples", "throttled samples", ""),
]  # fmt: skip
COMPARED = list(dict.fromkeys([k for k, *_ in PLOTTED] + [k for k, *_ in HEARD]))
STATUS_TEXT = {
    "passed": "passed",
    "failed": "FAILED",
    "unreachable": "UNREACHABLE",
    "started": "no result (unreachable or interrupted mid-rollout)",
    "not_reached": "not reached (rollout stopped)",
}


def load_units(run_dir: Path, expected: list[str]) -> list[dict[str, Any]]:
    units: dict[str, dict[str, Any]] = {}
    for path in sorted((run_dir / "units").glob("*.json")):
        record = json.loads(path.read_text())
        units[record["host"]] = record
    for host in expected:
        units.setdefault(host, {"host": host, "status": "not_reached", "reasons": []})
    for record in units.values():
        if record.get("status") == "started":
            record.setdefault("reasons", []).append(
                "the rollout started on this unit but no result came back"
            )
    return [units[h] for h in sorted(units)]


def status_text(unit: dict[str, Any]) -> str:
    text = STATUS_TEXT.get(unit["status"], unit["status"])
    return f"{text} (rolled back)" if unit.get("rolled_back_to") else text


def figures_of(unit: dict[str, Any]) -> dict[str, Any]:
    return dict((unit.get("gate") or {}).get("figures") or {})


def thresholds_of(unit: dict[str, Any]) -> dict[str, Any]:
    return dict(unit.get("thresholds") or (unit.get("gate") or {}).get("thresholds") or {})


def previous_run(run_dir: Path) -> Path | None:
    """The run before this one in the same parent directory: the one whose report was written
    last (run ids are the user's to choose, `-e rollout_run_id=…`, so names need not sort by
    time). A report built again (the report playbook on an earlier run) compares with the run
    its first build compared with, not with runs made since."""
    own = run_dir / "fleet-report.json"
    if own.is_file():
        name = json.loads(own.read_text()).get("previous_run")
        earlier = run_dir.parent / name if name else None
        return earlier if earlier and (earlier / "fleet-report.json").is_file() else None
    runs = [
        p
        for p in run_dir.parent.iterdir()
        if p.is_dir() and not p.is_symlink() and p != run_dir
        and (p / "fleet-report.json").is_file()
    ]  # fmt: skip
    return max(runs, key=lambda p: (p / "fleet-report.json").stat().st_mtime_ns, default=None)


def compare(units: list[dict[str, Any]], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Per unit: figure -> {now, before, change %}; release changes; status changes."""
    if previous is None:
        return {}
    before = {u["host"]: u for u in previous.get("units", [])}
    out: dict[str, Any] = {}
    for unit in units:
        old = before.get(unit["host"])
        if old is None:
            out[unit["host"]] = {"new_unit": True}
            continue
        now_f, old_f = figures_of(unit), figures_of(old)
        figs = {}
        for key in COMPARED:
            a, b = now_f.get(key), old_f.get(key)
            if a is not None and b is not None:
                change = round((a - b) / b * 100, 1) if b else None
                figs[key] = {"now": a, "before": b, "change_pct": change}
        out[unit["host"]] = {
            "figures": figs,
            "status_before": old.get("status"),
            "release_before": (old.get("release") or {}).get("id"),
            "release_changed": (old.get("release") or {}).get("id")
            != (unit.get("release") or {}).get("id"),
        }
    return out


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value} {unit}".strip()


def _limit(th: dict[str, Any], key: str) -> str:
    if not key or th.get(key) is None:
        return ""
    op = "≥" if key.endswith("_min") else "≤"
    return f" ({op} {th[key]:g})"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Fleet report — run {report['run_id']}",
        "",
        f"{report['summary']['passed']} of {report['summary']['units']} units passed "
        f"the gate; {report['summary']['failed']} failed; "
        f"{report['summary']['no_result']} gave no result. Generated {report['generated']}.",
        "",
        "| unit | group | status | decode tok/s | first token ms | voice turn ms "
        "| concurrent tok/s, errors | realtime first audio ms: 1 session p50, N at once p95 "
        "| release | why |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for u in report["units"]:
        f, th = figures_of(u), thresholds_of(u)
        release = (u.get("release") or {}).get("id", "–")
        if u.get("rolled_back_to"):
            release = f"{u['rolled_back_to']} (rolled back from {u.get('failed_release', '?')})"
        source = " (reused)" if u.get("bench_source") == "reused" else ""
        lines.append(
            f"| {u['host']} | {u.get('profile', '–')} | {status_text(u)}"
            f" | {_fmt(f.get('decode_tps'))}{_limit(th, 'decode_tps_min')}{source}"
            f" | {_fmt(f.get('ttft_ms'))}{_limit(th, 'ttft_ms_max')}"
            f" | {_fmt(f.get('voice_turn_ms'))}{_limit(th, 'voice_turn_ms_max')}"
            f" | {_fmt(f.get('concurrent_aggregate_tps'))}, "
            f"{_fmt(f.get('concurrent_errors'))} err ({f.get('concurrent_clients', '–')} clients)"
            f" | {_fmt(f.get('realtime_first_audio_p50_ms'))}"
            f"{_limit(th, 'realtime_first_audio_ms_max')}, "
            f"{_fmt(f.get('realtime_concurrent_first_audio_p95_ms'))}"
            f"{_limit(th, 'realtime_concurrent_first_audio_p95_ms_max')}"
            f" ({f.get('realtime_sessions') or '–'} at once)"
            f" | {release} | {'; '.join(u.get('reasons') or []) or '–'} |"
        )
    comparison = report.get("comparison") or {}
    lines += heard_table(report)
    if report.get("previous_run"):
        lines += ["", f"## Compared with run {report['previous_run']}", ""]
        for host, c in sorted(comparison.items()):
            if c.get("new_unit"):
                lines.append(f"- {host}: new in this run")
                continue
            figs = ", ".join(
                f"{k} {v['before']:g} → {v['now']:g}"
                + (f" ({v['change_pct']:+.1f}%)" if v["change_pct"] is not None else "")
                for k, v in c["figures"].items()
            )
            rel = "new release" if c["release_changed"] else "same release"
            lines.append(f"- {host}: {c['status_before']} → now; {rel}; {figs or 'no figures'}")
    return "\n".join(lines) + "\n"


def heard_table(report: dict[str, Any]) -> list[str]:
    """What users hear (realtime, barge-in, word recall) and the telemetry under the bench:
    now, the group's limit, and the previous run's figure in brackets."""
    units = [u for u in report["units"] if any(figures_of(u).get(k) is not None for k, *_ in HEARD)]
    if not units:
        return []
    comparison = report.get("comparison") or {}
    lines = ["", "## What users hear, and telemetry under the bench (previous run in [ ])", "",
             "| unit | N | " + " | ".join(col for _, col, _ in HEARD) + " | throttling |",
             "|---|---:|" + "---:|" * len(HEARD) + "---|"]  # fmt: skip
    for u in units:
        f, th = figures_of(u), thresholds_of(u)
        before = (comparison.get(u["host"]) or {}).get("figures") or {}
        cells = []
        for key, _, th_key in HEARD:
            old = before.get(key, {}).get("before")
            cells.append(_fmt(f.get(key)) + _limit(th, th_key)
                         + (f" [{_fmt(old)}]" if old is not None else ""))  # fmt: skip
        throttled = f.get("telemetry_throttled_samples")
        verdict = "no telemetry" if throttled is None else ("SEEN" if throttled else "none")
        if th.get("forbid_throttling"):
            verdict += " (forbidden)"
        lines.append(f"| {u['host']} | {f.get('realtime_sessions') or '–'} | "
                     + " | ".join(cells) + f" | {verdict} |")  # fmt: skip
    return lines


def plot_png(report: dict[str, Any], previous: dict[str, Any] | None) -> bytes:
    """One panel per figure: a bar per unit (green pass / red fail), its threshold as a black
    tick, and the previous run's value as a hollow diamond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = [u for u in report["units"] if figures_of(u)]
    before = {u["host"]: figures_of(u) for u in (previous or {}).get("units", [])}
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.8))
    for ax, (key, label, unit_name, th_key, better) in zip(axes, PLOTTED, strict=True):
        names = [u["host"] for u in units]
        values = [figures_of(u).get(key) or 0.0 for u in units]
        colors = ["#2e7d32" if u["status"] == "passed" else "#c62828" for u in units]
        xs = list(range(len(units)))
        ax.bar(xs, values, color=colors, width=0.6)
        for x, u in zip(xs, units, strict=True):
            limit = thresholds_of(u).get(th_key) if th_key else None
            if limit is not None:
                ax.hlines(limit, x - 0.4, x + 0.4, colors="black", linewidth=2)
            old = before.get(u["host"], {}).get(key)
            if old is not None:
                ax.plot(x, old, marker="D", markerfacecolor="none", color="#555555")
        ax.set_xticks(xs, names, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{label}\n({unit_name}, {better} is better)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("each unit vs its group's threshold (black) and the previous run (◇)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def html_page(report: dict[str, Any], md: str, png_name: str, png: bytes | None) -> str:
    rows = []
    for u in report["units"]:
        f, th = figures_of(u), thresholds_of(u)
        cls = "pass" if u["status"] == "passed" else "fail"
        stages = " / ".join(
            _fmt(f.get(k)) for k in ("voice_stt_ms", "voice_llm_ttft_ms", "voice_tts_ms")
        )
        facts = u.get("facts") or {}
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(u['host'])}</td>"
            f"<td>{html.escape(str(u.get('profile', '–')))}</td>"
            f"<td>{html.escape(status_text(u))}</td>"
            f"<td>{_fmt(f.get('decode_tps'))}{_limit(th, 'decode_tps_min')}</td>"
            f"<td>{_fmt(f.get('ttft_ms'))}{_limit(th, 'ttft_ms_max')}</td>"
            f"<td>{_fmt(f.get('voice_turn_ms'))}{_limit(th, 'voice_turn_ms_max')}</td>"
            f"<td>{stages}</td>"
            f"<td>{_fmt(f.get('concurrent_aggregate_tps'))} / {_fmt(f.get('concurrent_errors'))}"
            f"</td><td>{html.escape(str((u.get('release') or {}).get('id', '–')))}</td>"
            f"<td>{html.escape(str(facts.get('sku', '–')))}, "
            f"{html.escape(str(facts.get('power_mode', '–')))}</td>"
            f"<td>{html.escape('; '.join(u.get('reasons') or []) or '–')}</td></tr>"
        )
    img = ""
    if png is not None:
        data = base64.b64encode(png).decode()
        img = f"<p><img alt='figures vs thresholds' src='data:image/png;base64,{data}'></p>"
        img += f"<p class='note'>also saved as {html.escape(png_name)}</p>"
    s = report["summary"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fleet report {report["run_id"]}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.pass td:nth-child(3) {{ color: #2e7d32; font-weight: bold; }}
tr.fail td:nth-child(3) {{ color: #c62828; font-weight: bold; }}
.note {{ color: #666; font-size: 12px; }} img {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: 1em; font-size: 12px; overflow-x: auto; }}
</style></head><body>
<h1>Fleet report — run {html.escape(report["run_id"])}</h1>
<p><b>{s["passed"]} of {s["units"]} units passed</b>; {s["failed"]} failed;
{s["no_result"]} gave no result. Previous run: {html.escape(str(report.get("previous_run")))}.
Generated {html.escape(report["generated"])}.</p>
<table><tr><th>unit</th><th>group</th><th>status</th><th>decode tok/s</th>
<th>first token ms</th><th>voice turn ms</th><th>STT / LLM first token / TTS ms</th>
<th>concurrent tok/s / errors</th><th>release</th><th>SKU, power mode</th><th>why</th></tr>
{"".join(rows)}
</table>
{img}
<h2>Summary (Markdown)</h2><pre>{html.escape(md)}</pre>
</body></html>
"""


def build(run_dir: Path, expected: list[str], plots: bool = True) -> dict[str, Any]:
    units = load_units(run_dir, expected)
    prev_dir = previous_run(run_dir)
    previous = json.loads((prev_dir / "fleet-report.json").read_text()) if prev_dir else None
    counts = {k: sum(u["status"] == k for u in units) for k in STATUS_TEXT}
    report: dict[str, Any] = {
        "run_id": run_dir.name,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "previous_run": prev_dir.name if prev_dir else None,
        "summary": {
            "units": len(units),
            "passed": counts["passed"],
            "failed": counts["failed"],
            "no_result": counts["unreachable"] + counts["started"] + counts["not_reached"],
            "by_status": counts,
        },
        "units": units,
    }
    report["comparison"] = compare(units, previous)
    md = markdown(report)
    png = plot_png(report, previous) if plots and any(figures_of(u) for u in units) else None
    if png is not None:
        (run_dir / "figures.png").write_bytes(png)
    (run_dir / "fleet-report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "fleet-report.md").write_text(md)
    (run_dir / "fleet-report.html").write_text(html_page(report, md, "figures.png", png))
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)
    return report


def _report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    expected = [h for h in (args.hosts or "").split(",") if h]
    report = build(run_dir, expected, plots=not args.no_plots)
    if not args.quiet:
        print(markdown(report))
        print(f"fleet report: {run_dir / 'fleet-report.html'}")
        print(f"              {run_dir / 'fleet-report.md'}, {run_dir / 'fleet-report.json'}")
    return 0 if args.exit_zero or report["summary"]["passed"] == report["summary"]["units"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="fleet report of a rollout (JSON, Markdown, HTML + plots)")
    p.add_argument("run_dir", help="out/fleet-reports/<run-id> with units/<host>.json records")
    p.add_argument("--hosts", help="comma-separated units expected (missing: not reached)")
    p.add_argument("--no-plots", action="store_true", help="skip matplotlib")
    p.add_argument("--quiet", action="store_true", help="write the files, print nothing")
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even when units failed")
    p.set_defaults(func=_report)
