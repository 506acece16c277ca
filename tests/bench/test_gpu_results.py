"""The GPU proof: it runs exactly the llama-server command line the llamacpp role renders for an
Orin NX 16GB unit: the committed copy (docs/results/gpu/) must match a fresh render."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "docs" / "results" / "gpu"


def _render(dest: Path, *extra: str) -> list[str]:
    subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory/example",
         "bench/gpu/render_cmdline.yml", "-e", "render_group=orin_nx_16gb",
         "-e", f"render_dest={dest}", *extra],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    args: list[str] = json.loads(dest.read_text())["args"]
    return args


def test_committed_command_line_is_what_the_role_renders(tmp_path: Path) -> None:
    rendered = _render(tmp_path / "args.json")
    assert rendered == json.loads((GPU / "orin_nx_16gb.args.json").read_text())["args"]
    # the tuned config, not the field one: 2048 tokens per slot, 8 slots, all layers on GPU
    assert int(rendered[rendered.index("-c") + 1]) == 2048 * 8
    assert rendered[rendered.index("-np") + 1] == "8"
    assert (rendered[rendered.index("-b") + 1], rendered[rendered.index("-ub") + 1]) == (
        "512",
        "256",
    )
    assert rendered[rendered.index("-ngl") + 1] == "99"
    assert rendered[rendered.index("--flash-attn") + 1] == "on"
    # said explicitly: the pinned llama.cpp's default (--fit on) could move -c/-ngl at start-up
    assert rendered[rendered.index("--fit") + 1] == "off"


def test_committed_kv_layout_alternative_is_the_role_render_of_it(tmp_path: Path) -> None:
    # the bench's other KV layout is the role's own render with llamacpp_kv_unified flipped:
    # one shared pool of the same size, each slot still capped at ctx_per_slot
    default = json.loads((GPU / "orin_nx_16gb.args.json").read_text())["args"]
    rendered = _render(tmp_path / "args.json", "-e", "llamacpp_kv_unified=true")
    assert rendered == json.loads((GPU / "orin_nx_16gb.kv_unified.args.json").read_text())["args"]
    assert "--no-kv-unified" in default and "--kv-unified" not in default
    at = default.index("--no-kv-unified")
    # the same arguments otherwise, the pool as large (-c), each slot capped at 2048 tokens
    assert rendered == [*default[:at], "--kv-unified", "--kv-unified-per-slot", "2048",
                        *default[at + 1 :]]  # fmt: skip


def test_docs_tables_are_generated_from_the_committed_results() -> None:
    # bench/gpu/report.py --check: the GPU section of docs/benchmarks.md is what the JSON says
    subprocess.run(
        [sys.executable, "bench/gpu/report.py", "--check"], cwd=ROOT, check=True, timeout=60
    )
