"""voicefleet_models on a store (plugins/modules/voicefleet_models.py, its core in
plugins/module_utils/models.py, the store code app/modelstore imported from the zipapp the
role ships): check mode changes nothing and says what it would do, --diff shows the links
move, a model that fails verification leaves the installed one in place, rollback."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from app.modelstore.zipapp import build
from tests.plugins.conftest import run_module


def entry(src: Path, name: str, data: bytes, sha256: str | None = None) -> dict[str, Any]:
    """A pinned catalog entry for a TTS voice in a local source directory."""
    (src / name).mkdir(parents=True, exist_ok=True)
    (src / name / "voice.onnx").write_bytes(data)
    return {"name": name, "role": "tts", "source": {"type": "local", "dir": str(src / name)},
            "files": [{"name": "voice.onnx", "size": len(data),
                       "sha256": sha256 or hashlib.sha256(data).hexdigest()}]}  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    tool = tmp_path / "voicefleet-models.pyz"
    build(tool)  # the store code as a unit gets it
    return {
        "tmp": tmp_path,
        "store": tmp_path / "store",
        "tool": str(tool),
        "src": tmp_path / "src",
    }


def models(env: dict[str, Any], check: bool = False, **args: Any) -> dict[str, Any]:
    paths = {"store": str(env["store"]), "tool": env["tool"]}
    return run_module("voicefleet_models", {**paths, **args}, env["tmp"], check=check, diff=True)


def link(env: dict[str, Any]) -> str:
    return str((env["store"] / "current" / "tts").readlink().name)


def test_install_check_mode_reports_and_changes_nothing_then_installs(env: dict[str, Any]) -> None:
    v1 = entry(env["src"], "voice-v1", b"voice one" * 1000)
    sha = v1["files"][0]["sha256"]
    dry = models(env, check=True, catalog=[v1])
    assert dry["changed"] is True and not dry.get("failed"), dry
    assert dry["models"]["voice-v1"] == {"role": "tts", "bundle": sha, "action": "install",
                                         "relink": True}  # fmt: skip
    assert dry["needed"] == {sha: ["voice.onnx"]}
    assert dry["diff"]["before"].splitlines()[2] == "tts: -"
    assert dry["diff"]["after"].splitlines()[2] == f"tts: {sha}"
    assert not (env["store"] / sha).exists() and not (env["store"] / "current").exists()

    done = models(env, catalog=[v1])
    assert done["changed"] and done["models"]["voice-v1"]["action"] == "installed", done
    assert link(env) == sha and done["installed"]["tts"]["name"] == "voice-v1"
    assert done["diff"]["after"].splitlines()[2] == f"tts: {sha}"
    again = models(env, catalog=[v1])
    assert again["changed"] is False and again["needed"] == {} and "diff" not in again


def test_a_model_that_fails_verification_leaves_the_installed_one(env: dict[str, Any]) -> None:
    v1 = entry(env["src"], "voice-v1", b"voice one" * 1000)
    models(env, catalog=[v1])
    good = b"voice two" * 1000
    bad = entry(env["src"], "voice-v2", good[:-1] + b"X", sha256=hashlib.sha256(good).hexdigest())
    out = models(env, catalog=[bad])
    assert out["failed"] and "voice-v2" in out["failed_models"], out
    assert hashlib.sha256(good).hexdigest() in out["msg"]  # the expected sha256 is named
    assert link(env) == v1["files"][0]["sha256"]  # the installed model still serves
    assert not (env["store"] / hashlib.sha256(good).hexdigest()).exists()


def test_rollback_check_mode_then_back_to_the_previous_bundle(env: dict[str, Any]) -> None:
    v1 = entry(env["src"], "voice-v1", b"voice one" * 1000)
    v2 = entry(env["src"], "voice-v2", b"voice two" * 1000)
    models(env, catalog=[v1])
    models(env, catalog=[v2])
    sha1, sha2 = v1["files"][0]["sha256"], v2["files"][0]["sha256"]
    assert link(env) == sha2

    dry = models(env, check=True, action="rollback", roles=["tts"])
    assert dry["changed"] and dry["rolled_back"] == {"tts": {"from": sha2, "to": sha1}}
    assert link(env) == sha2 and dry["diff"]["after"].splitlines()[2] == f"tts: {sha1}"

    done = models(env, action="rollback", roles=["tts"], catalog=[v1, v2])
    assert done["rolled_back"] == {"tts": {"from": sha2, "to": sha1}} and link(env) == sha1
    no_llm = models(env, action="rollback", roles=["llm"])
    assert no_llm["failed"] and "no earlier llm model" in no_llm["msg"]


def test_fetch_fills_a_cache_without_switching_links_and_check_validates(
    env: dict[str, Any],
) -> None:
    v1 = entry(env["src"], "voice-v1", b"voice one" * 1000)
    out = models(env, action="fetch", catalog=[v1])
    assert out["changed"] and (env["store"] / v1["files"][0]["sha256"] / "voice.onnx").is_file()
    assert not (env["store"] / "current" / "tts").exists()
    assert models(env, action="check", catalog=[v1])["models"] == ["voice-v1"]
    unpinned = {**v1, "files": [{"name": "voice.onnx"}]}
    refused = models(env, action="check", catalog=[unpinned])
    assert refused["failed"] and "unpinned" in refused["msg"]


def test_check_mode_on_a_host_without_the_store_code_says_so(env: dict[str, Any]) -> None:
    """--check before the role ever reached a unit: its copy of the tool is not there yet."""
    v1 = entry(env["src"], "voice-v1", b"voice one" * 1000)
    missing = str(env["tmp"] / "lib" / "voicefleet-models.pyz")
    dry = models(env, check=True, catalog=[v1], tool=missing)
    assert dry["changed"] is True and not dry.get("failed") and "not on this host yet" in dry["msg"]
    assert models(env, check=True, action="read", tool=missing)["changed"] is False
    real = models(env, catalog=[v1], tool=missing)
    assert real["failed"] and "is missing" in real["msg"]
