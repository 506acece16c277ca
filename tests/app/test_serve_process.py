"""`voicefleet serve` as a process, configured from the environment as a unit's EnvironmentFile
and the GPU bench configure it, in front of the real llama-server: it loads, serves, and its
log has what an operator reads (engines loaded, access lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.bench.waiting import wait_http
from tests.app.conftest import LLM_NAME
from tests.conftest import LlamaServer, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
KEY = "serve-process-key-0123456789"


def test_serve_process_serves_and_logs(llama_server: LlamaServer, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "VOICEFLEET_SERVER__API_KEY": KEY,
        "VOICEFLEET_STT__ENABLED": "false",
        "VOICEFLEET_TTS__ENABLED": "false",
        "VOICEFLEET_LLM__BACKEND": "server",
        "VOICEFLEET_LLM__SERVER_URL": llama_server.url,
        "VOICEFLEET_LLM__SERVER_API_KEY": llama_server.api_key,
        "VOICEFLEET_LLM__MODEL_NAME": LLM_NAME,
        "VOICEFLEET_LLM__CTX_PER_SLOT": str(llama_server.ctx_per_slot),
        "VOICEFLEET_LLM__PARALLEL": str(llama_server.parallel),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": LLM_NAME, "messages": [{"role": "user", "content": "Hi."}],
                  "max_tokens": 4},
            timeout=60,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] > 0
    finally:
        stop_process(proc, timeout=15)
    text = log.read_text()
    assert "engines loaded (llm backend: server)" in text
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in text
