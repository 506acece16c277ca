"""The telemetry exporter as a process: it runs (the fake) tegrastats, serves /metrics, and
reports throttling as soon as the unit gets hot (read with prometheus_client's own parser)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, stop_process
from tests.roles.jetson_telemetry.conftest import FAKE, ROOT

EXPORTER = ROOT / "roles/jetson_telemetry/files/voicefleet-telemetry.py"


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def _wait_for(url: str, name: str, want: float, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = _scrape(url)
            if last.get(name) and last[name][0][1] == want:
                return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name} never became {want}: {last.get(name)}")


def test_exporter_serves_the_fake_and_flags_throttling(
    tmp_path: Path,
    fake_env: dict[str, str],
) -> None:
    wrapper = tmp_path / "tegrastats"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(0o755)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXPORTER),
            "--port",
            str(port),
            "--interval-ms",
            "200",
            "--tegrastats",
            str(wrapper),
            "--filesystem",
            str(tmp_path),
        ],
        env=fake_env,
    )
    try:
        cool = _wait_for(url, "jetson_telemetry_up", 1)
        assert cool["jetson_thermal_throttling"][0][1] == 0
        temps = {labels["sensor"]: v for labels, v in cool["jetson_temperature_celsius"]}
        assert set(temps) == {"cpu", "gpu", "soc0", "soc1", "soc2", "tj"} and temps["tj"] < 99
        assert {labels["rail"] for labels, _ in cool["jetson_power_milliwatts"]} == {
            "VDD_IN",
            "VDD_CPU_GPU_CV",
            "VDD_SOC",
        }
        assert cool["jetson_gpu_frequency_mhz"][0][1] == 1020
        (avail,) = cool["voicefleet_unit_filesystem_avail_bytes"]
        (size,) = cool["voicefleet_unit_filesystem_size_bytes"]
        assert avail[0] == {"mountpoint": str(tmp_path)} and 0 < avail[1] <= size[1]

        Path(fake_env["FAKE_L4T_TEGRASTATS_STATE"]).write_text("tj_c=102\n")
        hot = _wait_for(url, "jetson_thermal_throttling", 1)
        assert hot["jetson_gpu_frequency_mhz"][0][1] == 510

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=5)
        assert refused.value.code == 404
    finally:
        stop_process(proc)  # type: ignore[arg-type]
