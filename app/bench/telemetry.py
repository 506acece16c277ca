"""The unit's Jetson telemetry during a bench run (issue 21): the jetson_telemetry exporter's
/metrics (tegrastats: temperatures, the throttling gauge) sampled every second while the bench
loads the unit, so the gate can fail a unit that throttles under load when its group forbids it
(`forbid_throttling` in the thresholds).

The exporter (roles/jetson_telemetry) runs beside the service on the unit's loopback; when it
does not answer, the section says so (available: false) and a gate that forbids throttling fails
with "not measured" rather than passing a unit nobody watched.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[str, Any]:
    """The figures the gate needs from one scrape: up, throttling, temperature per sensor
    (read with prometheus_client's own text-format parser)."""
    out: dict[str, Any] = {"up": False, "throttling": None, "temperatures_c": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jetson_telemetry_up":
                out["up"] = sample.value == 1.0
            elif sample.name == "jetson_thermal_throttling":
                out["throttling"] = sample.value == 1.0
            elif sample.name == "jetson_temperature_celsius" and "sensor" in sample.labels:
                out["temperatures_c"][sample.labels["sensor"]] = sample.value
    return out


@dataclass
class TelemetryRecorder:
    """Samples the exporter until stopped; `summary()` is the bench report's section."""

    url: str
    interval_s: float = 1.0
    samples: int = 0
    throttled_samples: int = 0
    max_c: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _scrape(self, client: httpx.AsyncClient) -> None:
        try:
            resp = await client.get(self.url)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            self.errors.append(repr(exc)[:200])
            return
        sample = parse_metrics(resp.text)
        if not sample["up"]:  # the exporter runs but has no fresh tegrastats line
            self.errors.append("jetson_telemetry_up is not 1")
            return
        self.samples += 1
        self.throttled_samples += bool(sample["throttling"])
        for sensor, c in sample["temperatures_c"].items():
            self.max_c[sensor] = max(c, self.max_c.get(sensor, c))

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                await self._scrape(client)
                await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with httpx.AsyncClient(timeout=5) as client:  # one last look at the end
            await self._scrape(client)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        hottest = max(self.max_c, key=lambda s: self.max_c[s]) if self.max_c else None
        return {
            "url": self.url,
            "available": self.samples > 0,
            "samples": self.samples,
            "throttled_samples": self.throttled_samples,
            "throttling_seen": self.throttled_samples > 0,
            "max_temperature_c": self.max_c[hottest] if hottest else None,
            "hottest_sensor": hottest,
            "max_temperatures_c": dict(sorted(self.max_c.items())),
            "errors": len(self.errors),
            "error_samples": self.errors[:3],
        }


def print_telemetry(section: dict[str, Any]) -> None:
    if not section["available"]:
        print(f"\ntelemetry: not available ({section['url']}: {section['error_samples'][:1]})")
        return
    seen = section["throttled_samples"]
    print(f"\ntelemetry during the bench ({section['samples']} samples): max "
          f"{section['max_temperature_c']:g} C ({section['hottest_sensor']}), throttling "
          f"{f'SEEN in {seen} samples' if seen else 'none'}")  # fmt: skip
