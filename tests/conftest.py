"""Shared fixtures: the real small models (installed by `make setup`), a real llama-server
process, and real services on loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.bench.waiting import wait_http

VF_HOME = Path(os.environ.get("VOICEFLEET_HOME", Path.home() / ".cache" / "voicefleet"))
MODELS = VF_HOME / "models" / "current"
LLAMA_SERVER = VF_HOME / "llama.cpp" / "cpu" / "bin" / "llama-server"
API_KEY = "test-key"
# Tests that boot nspawn hosts (the test fleet): slow, and only as root with systemd-nspawn.
NSPAWN_MARKS = [
    pytest.mark.infra,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
        reason="needs root and systemd-nspawn",
    ),
]


@dataclass
class ModelPaths:
    stt_dir: Path
    tts_voice: Path
    llm_gguf: Path


def _first(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    if not found:
        pytest.fail(f"no {pattern} under {root}: run `make setup` (installs the test models)")
    return found[0]


@pytest.fixture(scope="session")
def model_paths() -> ModelPaths:
    return ModelPaths(
        stt_dir=MODELS / "stt",
        tts_voice=_first("*.onnx", MODELS / "tts"),
        llm_gguf=_first("*.gguf", MODELS / "llm"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """End a process the tests started (by its handle, never by name): TERM, then KILL."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class LlamaServer:
    url: str
    api_key: str
    ctx_per_slot: int
    parallel: int


LLAMA_API_KEY = "llama-test-key"


@contextmanager
def run_llama_server(
    model: Path, log: Path, ctx_per_slot: int, parallel: int, n_ctx: int | None = None
) -> Iterator[LlamaServer]:
    """A real llama-server process with the tuned flag set: -c ctx_per_slot * parallel unless
    n_ctx says otherwise (the field config's -c 2048 -np 8 gave each slot 256)."""
    if not LLAMA_SERVER.is_file():
        pytest.fail(f"{LLAMA_SERVER} missing: run `make setup` (builds llama-server)")
    port = free_port()
    env = {**os.environ, "LLAMA_API_KEY": LLAMA_API_KEY}
    cmd = [
        str(LLAMA_SERVER), "-m", str(model),
        "--host", "127.0.0.1", "--port", str(port),
        "-c", str(n_ctx or ctx_per_slot * parallel), "-np", str(parallel),
        "-b", "512", "-ub", "256", "-fa", "on", "-t", "2", "--cache-ram", "0",
        "--metrics", "--no-webui", "--jinja",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
        yield LlamaServer(f"http://127.0.0.1:{port}", LLAMA_API_KEY, ctx_per_slot, parallel)
    finally:
        stop_process(proc, timeout=15)


@pytest.fixture(scope="session")
def llama_server(
    model_paths: ModelPaths, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with run_llama_server(model_paths.llm_gguf, log, ctx_per_slot=1024, parallel=8) as server:
        yield server
