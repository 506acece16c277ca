"""bench/realtime_prefill.py runs end to end (one real llama-server, two real services, prefill
off and on) and writes every figure; no timing is asserted (figures are printed and written
as JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_prefill_bench_measures_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "prefill.json"
    subprocess.run(
        [sys.executable, "bench/realtime_prefill.py", "--rounds", "1", "--json", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    report = json.loads(out.read_text())
    off, on = report["off"], report["on"]
    for path in (off, on):
        assert path["rounds"] == 1 and path["history_tokens_p50"] > 300
        assert path["first_audio_p50_ms"] > 0 and path["prompt_tokens_p50"] > 300
    # the setting is what differs: the "off" service never prefills (the "on" one does when
    # the first sentence's transcript is ready while no speculative reply holds the slot)
    assert off["prefills_p50"] == 0 and off["prefill_tokens_p50"] == 0
    # a 340 ms pause inside the request: one answer either way
    assert off["answered_once"] == 1 and on["answered_once"] == 1
    assert set(report["ratios_on_over_off"]) == {
        "evaluated_at_end_p50", "first_token_p50", "first_audio_p50",
        "first_audio_round_ratio_p50",
    }  # fmt: skip
