"""Send the follow-up bench's first turn (~440 tokens with the shape model's vocabulary) to
the service and to llama-server itself; print what each answered, as one JSON line.

usage: python3 bench/gpu/context_check.py SERVICE_URL [LLAMA_URL]   (LLAMA_API_KEY from env)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx

from app.bench.followup import ASK, SYSTEM


def ask(url: str, key: str | None) -> dict[str, Any]:
    body = {
        "model": "llama-3.2-3b-instruct",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK}],
        "max_tokens": 8,
    }
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120)
    answer = r.json()
    error = answer.get("error") or {}
    code = error.get("code")
    return {
        "status": r.status_code,
        "prompt_tokens": (answer.get("usage") or {}).get("prompt_tokens")
        or error.get("n_prompt_tokens"),
        # the service: an OpenAI code string; llama-server: the HTTP status and a type
        "error_code": error.get("type") if isinstance(code, int) else code,
        "error": str(error.get("message", ""))[:200],
    }


def main() -> None:
    service = sys.argv[1]
    llama = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
    out = {
        "service": ask(service, None),
        "llama_server": ask(llama, os.environ.get("LLAMA_API_KEY")),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
