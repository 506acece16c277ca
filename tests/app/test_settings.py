"""One settings model: YAML file (templated by the role) + env overrides + safety rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, load_settings


def test_yaml_file_then_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "voicefleet.yml"
    config.write_text(
        "llm:\n  backend: server\n  ctx_per_slot: 4096\n  parallel: 8\nserver:\n  port: 9000\n"
    )
    monkeypatch.setenv("VOICEFLEET_LLM__PARALLEL", "4")
    settings = load_settings(config)
    assert settings.llm.backend == "server"
    assert settings.llm.ctx_per_slot == 4096
    assert settings.llm.parallel == 4  # env wins over the file
    assert settings.server.port == 9000


def test_an_explicit_file_is_not_left_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_settings(path) reads the file for that call only: a later Settings() and every
    child process (a bench's `voicefleet serve`) must not inherit it."""
    monkeypatch.delenv("VOICEFLEET_CONFIG", raising=False)
    config = tmp_path / "voicefleet.yml"
    config.write_text("wyoming:\n  enabled: true\n")
    assert load_settings(config).wyoming.enabled
    assert "VOICEFLEET_CONFIG" not in os.environ
    assert not Settings().wyoming.enabled
    with pytest.raises(FileNotFoundError, match=r"--config /nonexistent/v\.yml"):
        load_settings(Path("/nonexistent/v.yml"))


def test_missing_config_file_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEFLEET_CONFIG", "/nonexistent/voicefleet.yml")
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/voicefleet\.yml"):
        Settings()


def test_public_bind_needs_api_key() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        Settings(server={"host": "0.0.0.0"})
    assert Settings(server={"host": "0.0.0.0", "api_key": "k"}).server.host == "0.0.0.0"


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(lm={"backend": "server"})


def test_max_tokens_cap_must_leave_room_for_the_prompt() -> None:
    with pytest.raises(ValidationError, match="ctx_per_slot"):
        Settings(llm={"ctx_per_slot": 512, "max_tokens_cap": 600, "default_max_tokens": 100})


@pytest.mark.parametrize("section", ["server", "stt", "llm", "tts", "limits", "realtime"])
def test_a_misspelt_key_in_any_section_is_refused(section: str) -> None:
    with pytest.raises(ValidationError, match="mispelt_key"):
        Settings(**{section: {"mispelt_key": 1}})
