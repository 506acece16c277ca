"""The fake tegrastats' inputs, as the fake_l4t role writes them, for the telemetry tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FAKE = ROOT / "molecule/resources/roles/fake_l4t/files/tegrastats"


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    """The fake's inputs as the fake_l4t role writes them for an Orin Nano 8GB Super."""
    (tmp_path / "meminfo").write_text(
        "MemTotal:        7620112 kB\nMemFree:         4000000 kB\nMemAvailable:    5500000 kB\n"
    )
    (tmp_path / "clocks.conf").write_text(
        "machine=NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\n"
        "cpus=6\ncpu_min=729600\ncpu_max=1728000\ngpu_min=306000000\ngpu_max=1020000000\n"
        f"emc_max=3199000000\nmeminfo={tmp_path / 'meminfo'}\nengines=NVDEC,NVJPG,VIC,OFA\n"
    )
    (tmp_path / "locked").write_text("locked\n")
    return {
        **os.environ,
        "FAKE_L4T_CLOCKS_CONF": str(tmp_path / "clocks.conf"),
        "FAKE_L4T_TEGRASTATS_STATE": str(tmp_path / "tegrastats.state"),
        "FAKE_L4T_CLOCKS_LOCK": str(tmp_path / "locked"),
    }
