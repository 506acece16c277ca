"""LLM over HTTP to llama-server: the production path (continuous batching over slots)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from app.engines.base import (
    BackendUnavailableError,
    ChatMessage,
    ChatParams,
    ContextOverflowError,
    LLMChunk,
    Prefilled,
    RequestRejectedError,
    ToolCallDelta,
)
from app.engines.forced_tool import ForcedCall
from app.engines.llama_http import LlamaHTTP, UpstreamError
from app.settings import LLMSettings

_ERROR_BODY_LIMIT = 64 * 1024


def _error_from_body(body: Any, status: int) -> Exception:
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = str(error.get("message", body)) if isinstance(error, dict) else str(body)
    if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
        return ContextOverflowError(
            message, prompt_tokens=error.get("n_prompt_tokens"), n_ctx=error.get("n_ctx")
        )
    if status == 503:
        return BackendUnavailableError(f"llama-server is not ready: {message}")
    if status == 400:
        return RequestRejectedError(f"llama-server refused the request: {message}")
    return BackendUnavailableError(f"llama-server answered HTTP {status}: {message}")


def tool_fields(params: ChatParams, forced: ForcedCall | None) -> dict[str, Any]:
    """tools / tool_choice / parallel_tool_calls / response_format as llama-server takes them.
    A forced call goes as the tools (the template shows them to the model) and a JSON-schema
    response format that makes the reply the call (app/engines/forced_tool.py says why)."""
    fields: dict[str, Any] = {}
    if forced is not None:
        fields["tools"] = [t.to_openai() for t in forced.tools]
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "tool_call", "schema": forced.schema},
        }
        return fields
    if params.tools:
        fields["tools"] = [t.to_openai() for t in params.tools]
        fields["tool_choice"] = params.tool_choice
        if params.parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = params.parallel_tool_calls
    if params.response_format is not None:
        fields["response_format"] = params.response_format.to_openai()
    return fields


def _tool_call_deltas(delta: dict[str, Any]) -> list[ToolCallDelta]:
    out = []
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {}
        out.append(
            ToolCallDelta(
                index=int(call.get("index", 0)),
                id=call.get("id") or None,
                name=function.get("name") or None,
                arguments=function.get("arguments") or "",
            )
        )
    return out


class LlamaServerLLM:
    def __init__(self, settings: LLMSettings) -> None:
        self.model_name = settings.model_name
        self.ctx_per_slot = settings.ctx_per_slot
        self.cache_prompt = settings.cache_prompt
        self._timeout = settings.request_timeout_s
        headers = {"Content-Type": "application/json"}
        if settings.server_api_key is not None:
            key = settings.server_api_key.get_secret_value()
            headers["Authorization"] = f"Bearer {key}"
        # the LLM gate runs `parallel` chats at once; one more connection for /health probes
        self._http = LlamaHTTP(settings.server_url, headers, pool_size=settings.parallel + 1)

    async def start(self) -> None:
        """Nothing to load here: llama-server loads the model; readiness is polled."""

    async def aclose(self) -> None:
        """Close the pooled connections to llama-server."""
        await self._http.aclose()

    async def close_connections(self) -> None:
        """The pool of this event loop (LlamaHTTP keeps one per loop); the next request on
        another loop opens a new one."""
        await self._http.aclose()

    async def ready(self) -> bool:
        try:
            async with self._http.request(
                "GET", "/health", connect_timeout=2.0, read_timeout=2.0
            ) as resp:
                await resp.body(limit=4096)
                return resp.status == 200
        except (UpstreamError, TimeoutError):
            return False

    def _payload(
        self, messages: list[ChatMessage], params: ChatParams, forced: ForcedCall | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # keep the conversation's prefix in the slot's KV cache: a follow-up turn only
            # prefills its new tokens
            "cache_prompt": self.cache_prompt,
            **tool_fields(params, forced),
        }
        if params.stop:
            payload["stop"] = params.stop
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.slot is not None:
            payload["id_slot"] = params.slot
        return payload

    async def prefill(self, messages: list[ChatMessage], params: ChatParams) -> Prefilled | None:
        """The prompt `stream` would send, with `n_predict: 0`: llama-server evaluates it into
        the slot's cache and stops after sampling one token (server-schema.cpp: "When 0, no
        tokens will be generated but the prompt is evaluated into the cache";
        process_token() stops at the first token when no budget is left). Its reply's
        `timings` say how many prompt tokens it evaluated (prompt_n) beside the cached
        ones (cache_n)."""
        forced = ForcedCall(params) if ForcedCall.wanted(params) else None
        payload = self._payload(messages, params, forced)
        payload |= {"stream": False, "n_predict": 0}
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            async with self._http.request(
                "POST", "/v1/chat/completions", body,
                connect_timeout=5.0, read_timeout=self._timeout,
            ) as resp:  # fmt: skip
                raw = await resp.body(limit=_ERROR_BODY_LIMIT)
                try:
                    parsed = json.loads(raw)
                except ValueError as exc:
                    raise BackendUnavailableError(
                        f"llama-server sent an unreadable answer: {raw[:120]!r}"
                    ) from exc
                if resp.status != 200:
                    raise _error_from_body(parsed, resp.status)
        except TimeoutError as exc:
            raise BackendUnavailableError(
                f"llama-server timed out (no data for {self._timeout:g} s)"
            ) from exc
        except UpstreamError as exc:
            raise BackendUnavailableError(f"llama-server unreachable: {exc}") from exc
        timings = parsed.get("timings") or {}
        n = int(timings.get("prompt_n", 0))
        return Prefilled(n + int(timings.get("cache_n", 0)), n, float(timings.get("prompt_ms", 0)))

    async def stream(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[LLMChunk, None]:
        forced = ForcedCall(params) if ForcedCall.wanted(params) else None
        payload = self._payload(messages, params, forced)
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
        finish_reason: str | None = None
        completion_tokens = 0
        prompt_tokens = 0
        cached_tokens = 0
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            async with self._http.request(
                "POST", "/v1/chat/completions", body,
                connect_timeout=5.0, read_timeout=self._timeout,
            ) as resp:  # fmt: skip
                if resp.status != 200:
                    raw = await resp.body(limit=_ERROR_BODY_LIMIT)
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = raw.decode(errors="replace")
                    raise _error_from_body(parsed, resp.status)
                async for line in resp.lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        await resp.finish()
                        break
                    try:
                        event = json.loads(data)
                    except ValueError as exc:
                        raise BackendUnavailableError(
                            f"llama-server sent an unreadable event: {data[:120]!r}"
                        ) from exc
                    if "error" in event:
                        raise _error_from_body(event, 500)
                    usage = event.get("usage")
                    if usage:
                        prompt_tokens = int(usage.get("prompt_tokens", 0))
                        completion_tokens = int(usage.get("completion_tokens", 0))
                        details = usage.get("prompt_tokens_details") or {}
                        cached_tokens = int(details.get("cached_tokens", 0))
                    for choice in event.get("choices", []):
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or ""
                        calls = _tool_call_deltas(delta)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        if forced is not None and text:
                            calls, text = forced.feed(text), ""
                        if text or calls:
                            yield LLMChunk(text=text, tool_calls=calls)
        except TimeoutError as exc:
            raise BackendUnavailableError(
                f"llama-server timed out (no data for {self._timeout:g} s)"
            ) from exc
        except UpstreamError as exc:
            raise BackendUnavailableError(f"llama-server unreachable: {exc}") from exc
        if forced is not None:
            tail = forced.finish()
            if tail is not None:
                yield tail
            finish_reason = forced.finish_reason(finish_reason)
        yield LLMChunk(
            finish_reason=finish_reason or "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
        )
