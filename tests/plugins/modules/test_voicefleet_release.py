"""voicefleet_release on a unit's directories (plugins/modules/voicefleet_release.py and its
core, plugins/module_utils/release.py): what it records, what check mode reports without
writing, what --diff shows, a rollback's restore + finish."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.conftest import run_module

ROLES = ("llm", "stt", "tts")


@pytest.fixture
def unit(tmp_path: Path) -> dict[str, Any]:
    """A unit as the roles leave it: an app venv, a llama.cpp build, three model bundles, a
    settings file; `args` are the module's paths."""
    app, llama, models = tmp_path / "app", tmp_path / "llama.cpp", tmp_path / "models"
    (app / "venvs" / "venv-a").mkdir(parents=True)
    (app / "venvs" / "venv-a" / ".complete").write_text('{"version": "0.1.0"}\n')
    os.symlink("venvs/venv-a", app / "current")
    (llama / "builds" / "build-a").mkdir(parents=True)
    os.symlink("builds/build-a", llama / "current")
    (models / "current").mkdir(parents=True)
    for role in ROLES:
        (models / f"{role}-bundle").mkdir()
        os.symlink(f"../{role}-bundle", models / "current" / role)
    settings = tmp_path / "voicefleet.yaml"
    settings.write_text("server: {port: 8000}\n")
    args = {"root": str(tmp_path / "releases"), "app_dir": str(app), "llamacpp_dir": str(llama),
            "models_store": str(models), "config_files": [str(settings)]}  # fmt: skip
    return {"args": args, "settings": settings, "root": tmp_path / "releases", "tmp": tmp_path}


def release(unit: dict[str, Any], action: str, check: bool = False, **more: Any) -> dict[str, Any]:
    return run_module(
        "voicefleet_release", {**unit["args"], "action": action, **more}, unit["tmp"],
        check=check, diff=True,
    )  # fmt: skip


def test_record_in_check_mode_reports_the_new_release_and_writes_nothing(
    unit: dict[str, Any],
) -> None:
    out = release(unit, "record", check=True)
    assert out["changed"] is True and not out.get("failed"), out
    rid = out["result"]["id"]
    assert out["diff"] == {"before": "current: None\nprevious: None\n",
                           "after": f"current: {rid}\nprevious: None\n"}  # fmt: skip
    assert not unit["root"].exists()  # nothing written


def test_record_is_idempotent_and_a_config_change_is_a_new_release(unit: dict[str, Any]) -> None:
    first = release(unit, "record", meta={"run_id": "r1"})
    assert first["changed"] and first["release_current"]["current"] == first["result"]["id"]
    again = release(unit, "record")
    assert again["changed"] is False and "diff" not in again
    unit["settings"].write_text("server: {port: 8001}\n")
    second = release(unit, "record")
    assert second["changed"] and second["result"]["previous"] == first["result"]["id"]
    assert second["state"]["previous"] == first["result"]["id"]
    kept = (unit["root"] / first["result"]["id"] / "release.json").read_text()
    assert '"run_id": "r1"' in kept


def test_rollback_restore_and_finish_with_check_mode_first(unit: dict[str, Any]) -> None:
    first = release(unit, "record")["result"]["id"]
    unit["settings"].write_text("server: {port: 8001}\n")
    second = release(unit, "record")["result"]["id"]

    plan = release(unit, "read", target="previous")["plan"]
    assert plan["target"] == first and plan["differ"]["config"] == [str(unit["settings"])]
    assert plan["differ"]["models"] == [] and not plan["differ"]["app"]

    dry = release(unit, "restore", check=True, target="previous")
    assert dry["changed"] and dry["result"]["restored"] == [str(unit["settings"])]
    assert "port: 8001" in unit["settings"].read_text()  # check mode: untouched
    assert f"restored: {unit['settings']}" in dry["diff"]["after"]

    done = release(unit, "restore", target="previous")
    assert done["changed"] and unit["settings"].read_text() == "server: {port: 8000}\n"
    assert release(unit, "restore", target=first)["changed"] is False  # nothing left to do

    fin = release(unit, "finish", target=first, failed=second)
    assert fin["changed"] and fin["result"] == {"changed": True, "current": first,
                                                "previous": second}  # fmt: skip
    assert (unit["root"] / second / "failed.json").is_file()
    assert fin["diff"]["after"] == f"current: {first}\nprevious: {second}\n"


def test_mark_keeps_a_bench_result_once_and_check_mode_keeps_nothing(unit: dict[str, Any]) -> None:
    rid = release(unit, "record")["result"]["id"]
    bench = unit["tmp"] / "bench.json"
    bench.write_text('{"gate": {"passed": true}}\n')
    assert release(unit, "mark", check=True, target=rid, bench=str(bench))["changed"]
    assert not (unit["root"] / rid / "bench.json").exists()
    assert release(unit, "mark", target=rid, bench=str(bench))["changed"]
    assert release(unit, "mark", target=rid, bench=str(bench))["changed"] is False
    assert release(unit, "read")["release_current"]["bench"] == {"gate": {"passed": True}}


def test_no_previous_release_is_a_clear_failure(unit: dict[str, Any]) -> None:
    release(unit, "record")
    out = release(unit, "restore", target="previous")
    assert out["failed"] and out["msg"] == "voicefleet_release: no previous release on this unit"
    assert release(unit, "read", target="previous")["plan"]["target"] is None


def test_a_role_restores_only_its_own_files(unit: dict[str, Any]) -> None:
    """Each role's rollback names its own files: voice_service's restore leaves llama-server's
    file (and the app link, when asked) to their owner."""
    other = unit["tmp"] / "llama-server.env"
    other.write_text("LLAMA_ARG_THREADS=1\n")
    args = {**unit["args"], "config_files": [str(unit["settings"]), str(other)]}
    first = run_module("voicefleet_release", {**args, "action": "record"}, unit["tmp"])
    unit["settings"].write_text("server: {port: 8001}\n")
    other.write_text("LLAMA_ARG_THREADS=16\n")
    run_module("voicefleet_release", {**args, "action": "record"}, unit["tmp"])
    mine = run_module(
        "voicefleet_release",
        {**args, "action": "restore", "target": "previous", "files": [str(unit["settings"])],
         "app": False},
        unit["tmp"],
    )  # fmt: skip
    assert mine["result"] == {"changed": True, "restored": [str(unit["settings"])]}
    assert unit["settings"].read_text() == "server: {port: 8000}\n"
    assert other.read_text() == "LLAMA_ARG_THREADS=16\n"  # not this role's file
    plan = run_module("voicefleet_release", {**args, "target": first["result"]["id"]}, unit["tmp"])
    assert plan["plan"]["differ"]["config"] == [str(other)]
