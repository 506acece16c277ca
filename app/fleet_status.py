"""`voicefleet fleet-status`: the fleet's live state, as the fleet's Prometheus sees it now.

Queries Prometheus's HTTP API (playbooks/monitoring.yml installs it; docs/monitoring.md) and
prints one row per unit: whether each of its three targets (the voice service, llama-server,
the Jetson telemetry) is up, llama-server's decode speed per stream (tokens generated / time
generating, since llama-server started: there without traffic now), the voice turn time
(`/v1/voice`, mean since the service started) and, where traffic came in the last 5 minutes,
the recorded first-audio p95 and tok/s, the junction temperature and the alerts firing.

  voicefleet fleet-status --prometheus http://127.0.0.1:9090 [--wait 120] [--json]

Exit 1 when a target is down or an alert fires (after --wait seconds of waiting for every
target to be up), 2 when Prometheus does not answer.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import httpx

JOBS = ("voicefleet", "llama-server", "jetson-telemetry")
# column -> PromQL, one series per unit (instant queries)
FIGURES = {
    "decode_tps": "sum by (unit) (llamacpp:tokens_predicted_total)"
    " / (sum by (unit) (llamacpp:tokens_predicted_seconds_total) > 0)",
    "voice_turn_s": 'sum by (unit) (voicefleet_stage_seconds_sum{stage="voice_total"})'
    ' / (sum by (unit) (voicefleet_stage_seconds_count{stage="voice_total"}) > 0)',
    "first_audio_p95_5m_s": "unit:voicefleet_first_audio_seconds:p95_5m",
    "tokens_per_s_5m": "unit:voicefleet_llm_tokens:rate5m",
    "tj_celsius": 'jetson_temperature_celsius{sensor="tj"}',
}


class PrometheusError(Exception):
    """Prometheus did not answer a query."""


def query(client: httpx.Client, url: str, promql: str) -> list[dict[str, Any]]:
    try:
        resp = client.get(f"{url}/api/v1/query", params={"query": promql})
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PrometheusError(f"{url}: {promql}: {exc}") from exc
    if body.get("status") != "success":
        raise PrometheusError(f"{url}: {promql}: {body.get('error', body)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def fleet_status(client: httpx.Client, url: str) -> dict[str, Any]:
    """{units: {unit: {group, up: {job: 0|1}, figures..., alerts: [...]}}, targets_up, ...}."""
    units: dict[str, dict[str, Any]] = {}
    for r in query(client, url, "up"):
        labels = r["metric"]
        if labels.get("job") not in JOBS or "unit" not in labels:
            continue
        unit = units.setdefault(labels["unit"], {"group": labels.get("group", ""), "up": {},
                                                 "alerts": []})  # fmt: skip
        unit["up"][labels["job"]] = int(float(r["value"][1]))
    for unit in units.values():
        for name in FIGURES:
            unit[name] = None
    for name, promql in FIGURES.items():
        for r in query(client, url, promql):
            value = float(r["value"][1])
            if r["metric"].get("unit") in units and math.isfinite(value):
                units[r["metric"]["unit"]][name] = value
    for r in query(client, url, 'ALERTS{alertstate="firing"}'):
        labels = r["metric"]
        if labels.get("unit") in units:
            units[labels["unit"]]["alerts"].append(labels["alertname"])
    targets = [v for u in units.values() for v in u["up"].values()]
    return {"prometheus": url, "units": dict(sorted(units.items())),
            "targets": len(targets), "targets_up": sum(targets),
            "alerts_firing": sum(len(u["alerts"]) for u in units.values())}  # fmt: skip


def healthy(status: dict[str, Any]) -> bool:
    complete = all(set(u["up"]) == set(JOBS) for u in status["units"].values())
    return bool(status["units"]) and complete and status["targets_up"] == status["targets"]


def render(status: dict[str, Any]) -> str:
    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = ("unit", "group", "service", "llama", "telemetry", "decode tok/s", "voice turn s",
            "1st audio p95 5m", "tok/s 5m", "tj C", "alerts firing")  # fmt: skip
    rows = [head]
    for name, u in status["units"].items():
        up = ["up" if u["up"].get(j) == 1 else "DOWN" if j in u["up"] else "?" for j in JOBS]
        rows.append((name, u["group"], *up, num(u["decode_tps"], ".1f"),
                     num(u["voice_turn_s"], ".2f"), num(u["first_audio_p95_5m_s"], ".2f"),
                     num(u["tokens_per_s_5m"], ".1f"), num(u["tj_celsius"], ".1f"),
                     ",".join(sorted(u["alerts"])) or "-"))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = [f"Prometheus {status['prometheus']}: {len(status['units'])} units, "
             f"{status['targets_up']}/{status['targets']} targets up, "
             f"{status['alerts_firing']} alerts firing"]  # fmt: skip
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def _fleet_status(args: argparse.Namespace) -> int:
    url = args.prometheus.rstrip("/")
    deadline = time.monotonic() + args.wait
    status: dict[str, Any] | None = None
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                status = fleet_status(client, url)
            except PrometheusError as exc:
                if time.monotonic() >= deadline:
                    print(f"fleet-status: {exc}", file=sys.stderr)
                    return 2
                status = None
            if status is not None and (healthy(status) or time.monotonic() >= deadline):
                break
            time.sleep(2)
    assert status is not None
    print(json.dumps(status, indent=1) if args.json else render(status))
    return 0 if healthy(status) and not status["alerts_firing"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser("fleet-status", help="the fleet's live state from its Prometheus")
    p.add_argument("--prometheus", default="http://127.0.0.1:9090",
                   help="Prometheus (default: via `ssh -L 9090:127.0.0.1:9090`)")  # fmt: skip
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for every unit's targets to be up")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_fleet_status)
