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


def test_code_run_by_a_units_own_python_is_checked_for_3_10() -> None:
    """`make lint` runs vermin (target 3.10) over UNIT_PY310: every file of the models zipapp
    must be in that list, or a 3.11-only call could reach a JetPack 6 unit unchecked."""
    from app.modelstore.zipapp import members

    makefile = (ROOT / "Makefile").read_text()
    checked = re.search(r"^UNIT_PY310 := (.+)$", makefile, re.M)
    assert checked and "$(UNIT_PY310)" in makefile
    roots = [ROOT / p for p in checked[1].split()]
    for _, source in members():
        if isinstance(source, Path):
            assert any(source == r or r in source.parents for r in roots), source


def test_make_molecule_runs_every_scenario_and_every_stage_exists() -> None:
    """`make molecule` runs every scenario under molecule/; a staged test_sequence entry names a
    playbook of its scenario (`side_effect FILE.yml`) or a directory of testinfra tests
    (`verify DIR`): Molecule 26.10 walks a verify argument for test_*.py and skips the stage when
    it finds none (a file path, a typo), and skips every side_effect stage when the scenario
    sets no `side_effect` playbook: either would pass silently."""
    import yaml

    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^MOLECULE_SCENARIOS := (.+)$", makefile, re.M)
    assert listed
    scenarios = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    assert sorted(listed[1].split()) == scenarios
    staged = 0
    for name in scenarios:
        directory = ROOT / "molecule" / name
        config = yaml.safe_load((directory / "molecule.yml").read_text())
        for step in config.get("scenario", {}).get("test_sequence", []):
            action, *args = step.split()
            if action == "side_effect":  # unset: Molecule skips every side_effect stage
                assert config["provisioner"]["playbooks"].get("side_effect"), name
            for arg in args:
                staged += 1
                if action == "side_effect":
                    assert (directory / arg).is_file(), f"{name}: {step}"
                else:
                    assert action == "verify", f"{name}: {step}"
                    assert list((directory / arg).rglob("test_*.py")), f"{name}: {step}"
    assert staged >= 6  # the stack scenario's stages
