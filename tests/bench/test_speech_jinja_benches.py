"""bench/speech_formats.py and bench/jinja_decode.py run end to end (a real service with the
test voice; two real llama-server processes) and write every figure; no timing is asserted
(figures are printed and written as JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, out: Path, *args: str) -> dict:  # type: ignore[type-arg]
    subprocess.run(
        [sys.executable, script, *args, "--json", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    report: dict = json.loads(out.read_text())  # type: ignore[type-arg]
    return report


def test_speech_formats_bench_measures_every_format(tmp_path: Path) -> None:
    report = _run("bench/speech_formats.py", tmp_path / "speech.json", "--rounds", "1")
    formats = {"wav", "mp3", "opus", "aac", "flac"}
    assert set(report["first_audio_ms_median"]) == formats
    assert all(0 < report["first_audio_ms_median"][f] <= report["total_ms_median"][f]
               for f in formats)  # fmt: skip
    assert report["first_audio_over_wav"]["wav"] == 1.0
    # the encoded formats are smaller than PCM
    assert report["bytes"]["mp3"] < report["bytes"]["wav"] / 4


def test_jinja_decode_bench_measures_both_servers(tmp_path: Path) -> None:
    report = _run("bench/jinja_decode.py", tmp_path / "jinja.json", "--rounds", "1",
                  "--tokens", "8")  # fmt: skip
    assert set(report["decode_tok_s_median"]) == {"jinja", "no_jinja"}
    assert all(v > 0 for v in report["decode_tok_s_median"].values())
    assert report["jinja_over_no_jinja_decode_paired_median"] > 0
