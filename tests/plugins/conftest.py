"""The collection's modules run as Ansible runs them on a unit: the module file executed by
Python with its arguments as JSON (check mode and --diff as Ansible passes them), importing
its module_utils from the collection (the checkout's .collections link)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "plugins" / "modules"


def run_module(
    name: str, args: dict[str, Any], tmp: Path, *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run plugins/modules/NAME.py with ARGS; its JSON result (failed results included)."""
    argfile = tmp / f".{name}-args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        **args, "_ansible_check_mode": check, "_ansible_diff": diff,
        "_ansible_tmpdir": str(tmp), "_ansible_remote_tmp": str(tmp),
    }}))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".collections")}
    proc = subprocess.run([sys.executable, str(MODULES / f"{name}.py"), str(argfile)],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert proc.stdout.strip(), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
