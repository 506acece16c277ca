"""LLM over HTTP to llama-server: the production path (continuous batching over slots)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from app.engines.base import BackendUnavailableError, ChatParams, ContextOverflowError, LLMChunk
from app.settings import LLMSettings


def _error_from_body(body: Any, status: int) -> Exception:
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = str(error.get("message", body)) if isinstance(error, dict) else str(body)
    if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
        return ContextOverflowError(
            message, prompt_tokens=error.get("n_prompt_tokens"), n_ctx=error.get("n_ctx")
        )
    if status == 503:
        return BackendUnavailableError(f"llama-server is not ready: {message}")
    return BackendUnavailableError(f"llama-server answered HTTP {status}: {message}")


class LlamaServerLLM:
    def __init__(self, settings: LLMSettings) -> None:
        self.model_name = settings.model_name
        self.ctx_per_slot = settings.ctx_per_slot
        self.cache_prompt = settings.cache_prompt
        headers = {}
        if settings.server_api_key is not None:
            headers["Authorization"] = f"Bearer {settings.server_api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=settings.server_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=5.0),
            # one connection per slot plus headroom for health checks
            limits=httpx.Limits(max_connections=settings.parallel * 2 + 4),
        )

    async def start(self) -> None:
        """Nothing to load here: llama-server loads the model; readiness is polled."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ready(self) -> bool:
        try:
            response = await self._client.get("/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def stream(
        self, messages: list[dict[str, str]], params: ChatParams
    ) -> AsyncGenerator[LLMChunk, None]:
        payload: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # keep the conversation's prefix in the slot's KV cache: a follow-up turn only
            # prefills its new tokens
            "cache_prompt": self.cache_prompt,
        }
        if params.stop:
            payload["stop"] = params.stop
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.slot is not None:
            payload["id_slot"] = params.slot
        finish_reason: str | None = None
        completion_tokens = 0
        prompt_tokens = 0
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=payload) as resp:
                if resp.status_code != 200:
                    body = await resp.aread()
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = body.decode(errors="replace")
                    raise _error_from_body(parsed, resp.status_code)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise _error_from_body(event, 500)
                    usage = event.get("usage")
                    if usage:
                        prompt_tokens = int(usage.get("prompt_tokens", 0))
                        completion_tokens = int(usage.get("completion_tokens", 0))
                    for choice in event.get("choices", []):
                        text = (choice.get("delta") or {}).get("content") or ""
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        if text:
                            yield LLMChunk(text=text)
        except httpx.TimeoutException as exc:
            raise BackendUnavailableError(f"llama-server timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"llama-server unreachable: {exc!r}") from exc
        yield LLMChunk(
            finish_reason=finish_reason or "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
