"""The tegrastats parser (roles/jetson_telemetry/files/voicefleet-telemetry.py) and the fake.

The fixtures are real lines from JetPack 6.2 (L4T R36.4.3) units as published: an Orin Nano
Super under load (with EMC_FREQ: tegrastats run as root) and an Orin NX 16GB at idle (without
EMC_FREQ, as a non-root tegrastats prints it, and with the -256C marker-free cv sensors). The
fake tegrastats of the sim fleet must print the same layout: its line, numbers masked, equals
the real line's, and it parses into the same fields.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.roles.jetson_telemetry.conftest import FAKE, ROOT

# Orin Nano 8GB Super, JetPack 6.2 / L4T 36.4.3, GPU busy (tegrastats as root).
REAL_NANO_BUSY = (
    "10-08-2026 04:35:02 RAM 6712/7620MB (lfb 12x4MB) SWAP 369/3810MB (cached 8MB) "
    "CPU [38%@1497,2%@729,1%@729,0%@729,1%@729,0%@729] EMC_FREQ 61%@2133 "
    "GR3D_FREQ 99%@[612] NVDEC off NVJPG off VIC off OFA off APE 200 "
    "cpu@57.125C soc2@55.093C soc0@56.625C gpu@58.625C tj@58.312C soc1@55.937C "
    "VDD_IN 16321mW/11204mW VDD_CPU_GPU_CV 7104mW/4944mW VDD_SOC 3120mW/3659mW"
)
# Orin NX 16GB, JetPack 6.2, idle, tegrastats without root (no EMC_FREQ, no GR3D clock).
REAL_NX_IDLE = (
    "07-16-2026 13:03:45 RAM 1224/15656MB (lfb 8x4MB) SWAP 0/7828MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] GR3D_FREQ 0% "
    "cv0@41.156C cpu@45.843C soc2@39.593C soc0@42.562C cv1@42.156C gpu@43.406C "
    "tj@45.843C soc1@40.25C cv2@38.593C "
    "VDD_IN 4304mW/4304mW VDD_CPU_GPU_CV 573mW/573mW VDD_SOC 1218mW/1218mW"
)


def _load() -> ModuleType:
    path = ROOT / "roles/jetson_telemetry/files/voicefleet-telemetry.py"
    spec = importlib.util.spec_from_file_location("voicefleet_telemetry", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


telemetry = _load()


def test_real_orin_nano_line_parses_every_field() -> None:
    s = telemetry.parse_line(REAL_NANO_BUSY)
    assert s["time"] == "10-08-2026 04:35:02"
    assert (s["ram_used_mb"], s["ram_total_mb"]) == (6712, 7620)
    assert (s["swap_used_mb"], s["swap_total_mb"]) == (369, 3810)
    assert [c["load_percent"] for c in s["cpus"]] == [38, 2, 1, 0, 1, 0]
    assert [c["freq_mhz"] for c in s["cpus"]] == [1497, 729, 729, 729, 729, 729]
    assert (s["emc_load_percent"], s["emc_freq_mhz"]) == (61, 2133)
    assert (s["gpu_load_percent"], s["gpu_freq_mhz"]) == (99, [612])
    assert s["temperatures_c"] == {
        "cpu": 57.125,
        "soc2": 55.093,
        "soc0": 56.625,
        "gpu": 58.625,
        "tj": 58.312,
        "soc1": 55.937,
    }
    assert s["rails_mw"] == {
        "VDD_IN": (16321, 11204),
        "VDD_CPU_GPU_CV": (7104, 4944),
        "VDD_SOC": (3120, 3659),
    }
    assert not telemetry.throttling(s, 99.0)


def test_real_orin_nx_line_without_emc_or_gpu_clock() -> None:
    s = telemetry.parse_line(REAL_NX_IDLE)
    assert (s["ram_used_mb"], s["ram_total_mb"]) == (1224, 15656)
    assert len(s["cpus"]) == 8 and all(c["online"] for c in s["cpus"])
    assert s["emc_load_percent"] is None and s["emc_freq_mhz"] is None
    assert (s["gpu_load_percent"], s["gpu_freq_mhz"]) == (0, [])
    assert s["temperatures_c"]["tj"] == 45.843 and s["temperatures_c"]["cv2"] == 38.593
    assert s["rails_mw"]["VDD_IN"] == (4304, 4304)


def test_parked_cores_and_absent_sensors() -> None:
    # A 10W mode parks cores ('off'); a sensor the module lacks reads -256C: neither is a reading.
    line = REAL_NANO_BUSY.replace("0%@729,1%@729,0%@729]", "off,off,off]").replace(
        "soc1@55.937C", "soc1@55.937C cv0@-256C"
    )
    s = telemetry.parse_line(line)
    assert [c["online"] for c in s["cpus"]] == [True, True, True, False, False, False]
    assert "cv0" not in s["temperatures_c"]
    assert 'jetson_cpu_online{core="5"} 0' in telemetry.render(s, 99.0, 0.5)


def test_not_a_tegrastats_line_is_refused() -> None:
    with pytest.raises(ValueError, match="not a tegrastats line"):
        telemetry.parse_line("NVPM WARN: fan mode is not set!")


def test_render_is_valid_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    families = {
        f.name: f
        for f in text_string_to_metric_families(
            telemetry.render(telemetry.parse_line(REAL_NANO_BUSY), 99.0, 0.4)
        )
    }
    temps = {s.labels["sensor"]: s.value for s in families["jetson_temperature_celsius"].samples}
    assert temps["tj"] == 58.312
    power = {s.labels["rail"]: s.value for s in families["jetson_power_milliwatts"].samples}
    assert power == {"VDD_CPU_GPU_CV": 7104, "VDD_IN": 16321, "VDD_SOC": 3120}
    assert families["jetson_gpu_frequency_mhz"].samples[0].value == 612
    assert families["jetson_emc_frequency_mhz"].samples[0].value == 2133
    assert families["jetson_thermal_throttling"].samples[0].value == 0
    assert families["jetson_telemetry_up"].samples[0].value == 1


# --- the fake (the sim fleet's tegrastats) ---------------------------------------------------


def _skeleton(line: str) -> str:
    """The layout with every number masked (sensor names like soc2 mask the same on both)."""
    return re.sub(r"\d+(?:\.\d+)?", "N", line)


def _fake_lines(env: dict[str, str], n: int) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--interval", "100"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        return [proc.stdout.readline().rstrip("\n") for _ in range(n)]
    finally:
        proc.kill()
        proc.wait()


def test_fake_prints_the_real_layout_and_parses_like_it(fake_env: dict[str, str]) -> None:
    line = _fake_lines(fake_env, 1)[0]
    assert _skeleton(line) == _skeleton(REAL_NANO_BUSY)
    fake, real = telemetry.parse_line(line), telemetry.parse_line(REAL_NANO_BUSY)
    assert {k for k, v in fake.items() if v not in (None, [], {})} == {
        k for k, v in real.items() if v not in (None, [], {})
    }
    assert fake["temperatures_c"].keys() == real["temperatures_c"].keys()
    assert fake["rails_mw"].keys() == real["rails_mw"].keys()
    assert len(fake["cpus"]) == 6
    # pinned clocks (jetson_clocks ran): the SKU's maxima, in tegrastats' MHz
    assert {c["freq_mhz"] for c in fake["cpus"]} == {1728}
    assert fake["gpu_freq_mhz"] == [1020] and fake["emc_freq_mhz"] == 3199
    assert fake["ram_total_mb"] == 7620 and fake["ram_used_mb"] == 7620 - 5500
    assert not telemetry.throttling(fake, 99.0)


def test_fake_throttles_on_demand(fake_env: dict[str, str]) -> None:
    Path(fake_env["FAKE_L4T_TEGRASTATS_STATE"]).write_text("tj_c=101.5\ngpu_load=99\n")
    hot = telemetry.parse_line(_fake_lines(fake_env, 1)[0])
    assert hot["temperatures_c"]["tj"] == 101.5
    assert telemetry.throttling(hot, 99.0)
    # the BPMP cuts clocks at the trip: GPU halved, CPU to 60% of the cap
    assert hot["gpu_freq_mhz"] == [510]
    assert {c["freq_mhz"] for c in hot["cpus"]} == {int(1728 * 0.6)}
    assert hot["gpu_load_percent"] == 99
    assert "jetson_thermal_throttling 1" in telemetry.render(hot, 99.0, 0.1)
