"""Fixtures for model supply tests: real GGUF files, a real hub-speaking HTTP server on
loopback, catalogs written as the inventory writes them, and a CLI runner."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.modelstore.cli import main as models_main

from .fakehub import FakeHub

SMOLLM2_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def _gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def make_gguf(n_floats: int, arch: str = "llama", seed: int = 0, ggml_type: int = 0) -> bytes:
    """A complete, well-formed GGUF v3 file: arch + file_type KVs and one F32 tensor (its
    type id is ggml_type, to write a header naming another type)."""
    kvs = _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string(arch)
    kvs += _gguf_string("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 0)
    tensor = _gguf_string("w") + struct.pack("<I", 1) + struct.pack("<Q", n_floats)
    tensor += struct.pack("<I", ggml_type) + struct.pack("<Q", 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 2) + kvs + tensor
    head += b"\0" * (-len(head) % 32)
    block = hashlib.sha256(f"{seed}".encode()).digest()
    data = (block * (n_floats * 4 // len(block) + 1))[: n_floats * 4]
    return head + data


def entry(
    name: str,
    role: str,
    source: dict[str, Any],
    files: dict[str, bytes],
    paths: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "role": role,
        "source": source,
        "files": [
            {
                "name": fname,
                "path": (paths or {}).get(fname, fname),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for fname, data in files.items()
        ],
    }


def write_catalog(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"models_catalog": entries}, sort_keys=False))
    return path


@pytest.fixture
def gguf_bytes() -> bytes:
    return make_gguf(512 * 1024)  # 2 MiB of weights


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub().start()
    yield server
    server.stop()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, Any, str]]:
    """Run `voicefleet models ARGS --json`-style commands in-process: (rc, json|stdout, stderr)."""

    def run(*args: str) -> tuple[int, Any, str]:
        rc = models_main([str(a) for a in args])
        out, err = capsys.readouterr()
        try:
            parsed: Any = json.loads(out) if out.strip() else None
        except ValueError:
            parsed = out
        return rc, parsed, err

    return run
