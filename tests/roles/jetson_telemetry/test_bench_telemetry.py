"""The bench's telemetry recorder (app/bench/telemetry.py) against the real exporter running the
fake tegrastats: it records the max temperature and the throttled samples of the run, and the
gate fails a unit that throttled when its group forbids throttling (issue 21)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.bench.gate import evaluate
from app.bench.telemetry import TelemetryRecorder, parse_metrics
from tests.app.test_gate import ORIN_NX, bench
from tests.conftest import free_port, stop_process
from tests.roles.jetson_telemetry.conftest import FAKE
from tests.roles.jetson_telemetry.test_telemetry_exporter import EXPORTER, _wait_for

FORBID = {**ORIN_NX, "forbid_throttling": True}


def _exporter(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    wrapper = tmp_path / "tegrastats"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(0o755)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXPORTER), "--port", str(port), "--interval-ms", "200",
         "--tegrastats", str(wrapper), "--filesystem", str(tmp_path)],
        env=env,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}/metrics"


async def _record(url: str, state: Path | None, seconds: float = 1.5) -> dict[str, Any]:
    """Sample for `seconds`; with `state`, the unit gets hot halfway (the fake's switch)."""
    recorder = TelemetryRecorder(url, interval_s=0.2)
    recorder.start()
    await asyncio.sleep(seconds / 2)
    if state is not None:
        await asyncio.to_thread(state.write_text, "tj_c=101.5\n")
    await asyncio.sleep(seconds / 2 + (0.6 if state is not None else 0))
    return await recorder.stop()


def test_a_unit_that_throttles_under_the_bench_fails_the_gate_that_forbids_it(
    tmp_path: Path, fake_env: dict[str, str]
) -> None:
    proc, url = _exporter(tmp_path, fake_env)
    try:
        _wait_for(url, "jetson_telemetry_up", 1)
        cool = asyncio.run(_record(url, None))
        hot = asyncio.run(_record(url, Path(fake_env["FAKE_L4T_TEGRASTATS_STATE"])))
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert cool["available"] and cool["samples"] >= 4 and cool["throttled_samples"] == 0
    assert cool["max_temperature_c"] is not None and cool["max_temperature_c"] < 99
    assert set(cool["max_temperatures_c"]) == {"cpu", "gpu", "soc0", "soc1", "soc2", "tj"}
    assert hot["throttling_seen"] and hot["throttled_samples"] >= 1
    assert hot["max_temperature_c"] == 101.5 and hot["hottest_sensor"] in ("tj", "cpu")

    assert evaluate(bench(telemetry=cool), FORBID)["passed"]
    gate = evaluate(bench(telemetry=hot), FORBID)
    assert not gate["passed"]
    assert gate["reasons"] == [
        f"throttling samples during the bench: {hot['throttled_samples']} (needs <= 0)"
    ]
    assert gate["figures"]["telemetry_max_temp_c"] == 101.5
    # not forbidden: recorded in the figures, not a failure
    allowed = evaluate(bench(telemetry=hot), {**ORIN_NX, "forbid_throttling": False})
    assert allowed["passed"] and allowed["figures"]["telemetry_throttled_samples"] >= 1


def test_no_exporter_is_not_measured_and_fails_a_gate_that_forbids_throttling() -> None:
    port = free_port()  # nothing listens there
    section = asyncio.run(_record(f"http://127.0.0.1:{port}/metrics", None, seconds=0.4))
    assert not section["available"] and section["samples"] == 0 and section["errors"] >= 1
    gate = evaluate(bench(telemetry=section), FORBID)
    assert gate["reasons"] == ["throttling samples during the bench: not measured"]
    assert not evaluate(bench(), FORBID)["passed"]  # bench run without --telemetry-url


def test_parse_metrics_reads_the_exporters_families() -> None:
    text = (
        "# HELP jetson_temperature_celsius x\n# TYPE jetson_temperature_celsius gauge\n"
        'jetson_temperature_celsius{sensor="tj"} 51.2\n'
        'jetson_temperature_celsius{sensor="gpu"} 49.9\n'
        "jetson_thermal_throttling 0\njetson_telemetry_up 1\n"
    )
    assert parse_metrics(text) == {
        "up": True, "throttling": False, "temperatures_c": {"tj": 51.2, "gpu": 49.9},
    }  # fmt: skip
    assert parse_metrics("jetson_telemetry_up 0\n")["up"] is False
