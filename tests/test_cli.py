"""The `voicefleet` CLI offers every subcommand the README documents."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.cli import build_parser


@pytest.mark.parametrize("command", ["serve", "bench", "fit", "models", "report"])
def test_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: voicefleet " + command in capsys.readouterr().out


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "bench", "fit", "models", "report"):
        assert command in out
