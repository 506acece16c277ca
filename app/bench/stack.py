"""The local stack the realtime bench scripts measure on (bench/realtime_paths.py,
bench/realtime_prefill.py): one CPU llama-server with the installed test model (the tests'
build, `-np parallel`) and one `voicefleet serve` per path, identical but for that path's
settings overrides (environment variables), all on loopback. Rounds then alternate between the
paths, so every path sees the same load."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.bench.waiting import wait_http

VF_HOME = Path(os.environ.get("VOICEFLEET_HOME", Path.home() / ".cache" / "voicefleet"))
MODELS = VF_HOME / "models" / "current"


@dataclass
class Stack:
    gguf: Path
    voice: Path
    parallel: int
    urls: dict[str, str] = field(default_factory=dict)  # path name -> its service

    def describe(self, tool: str) -> dict[str, Any]:
        """The head of a bench's JSON report: what ran, where, on what (call it at the end:
        the load average is the run's)."""
        n = self.parallel
        return {"tool": tool, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
                           f"{os.getloadavg()[0]:.1f} at the end",
                "models": {"stt": "tiny.en int8", "llm": self.gguf.name,
                           "tts": self.voice.name},
                "llama_server": f"-np {n} -c {2048 * n} -fa on"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_paths(
    root: Path, paths: Mapping[str, Mapping[str, str]], key: str, llama_key: str, parallel: int
) -> Iterator[Stack]:
    """llama-server + a service per path, ready; everything stopped on the way out."""
    stack = Stack(sorted((MODELS / "llm").glob("*.gguf"))[0],
                  sorted((MODELS / "tts").glob("*.onnx"))[0], parallel)  # fmt: skip
    llm_port = free_port()
    llm_url = f"http://127.0.0.1:{llm_port}"
    procs = [subprocess.Popen(
        [str(VF_HOME / "llama.cpp" / "cpu" / "bin" / "llama-server"), "-m", str(stack.gguf),
         "--host", "127.0.0.1", "--port", str(llm_port), "-c", str(2048 * parallel),
         "-np", str(parallel), "-fa", "on", "-t", str(os.cpu_count() or 2), "--no-webui",
         "--api-key", llama_key], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root), "VOICEFLEET_SERVER__API_KEY": key,
           "VOICEFLEET_LLM__BACKEND": "server", "VOICEFLEET_LLM__SERVER_URL": llm_url,
           "VOICEFLEET_LLM__SERVER_API_KEY": llama_key, "VOICEFLEET_LLM__PARALLEL": str(parallel),
           "VOICEFLEET_LLM__MODEL_NAME": stack.gguf.stem,
           "VOICEFLEET_STT__MODEL_DIR": str(MODELS / "stt"),
           "VOICEFLEET_TTS__VOICE_PATH": str(stack.voice)}  # fmt: skip
    try:
        wait_http(f"{llm_url}/health", timeout=120, proc=procs[0])
        for name, overrides in paths.items():
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=root,
                env={**env, **overrides}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            stack.urls[name] = f"http://127.0.0.1:{port}"
        for url, proc in zip(stack.urls.values(), procs[1:], strict=True):
            wait_http(f"{url}/readyz", timeout=180, proc=proc)
        yield stack
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
