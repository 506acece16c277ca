"""Project-level consistency: one pin of llama.cpp, documented settings, CI = README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_llama_cpp_pinned_in_one_place() -> None:
    pins = dict(
        line.split("=", 1)
        for line in (ROOT / "scripts/pins.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert f"llama-cpp-python=={pins['LLAMA_CPP_PYTHON_VERSION']}" in extras["embedded"]
    assert re.fullmatch(r"[0-9a-f]{64}", pins["LLAMA_CPP_PYTHON_SHA256"])


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        missing += [
            f"{section}.{name}"
            for name in model.model_fields
            if f"`{section}.{name}`" not in readme
        ]
    assert not missing, f"README configuration reference lacks: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
