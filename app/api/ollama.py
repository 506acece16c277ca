"""The Ollama API subset Home Assistant's Ollama integration (and the official `ollama`
client) uses: GET /api/version, GET /api/tags, POST /api/show, POST /api/chat (NDJSON
stream or one JSON object).

Over the same LLM engine, gate, limits and metrics as /v1/chat/completions
(app/pipeline.llm_stream), tools included (the engine's tool calls: llama-server's tool support,
forced calls by its grammar). Auth: the service's Bearer key like every route, except where
ollama.allow_unauthenticated says keyless clients (Home Assistant sends no key) are
accepted. Errors are Ollama's shape, {"error": "..."} (app/errors.py). A request field or
option this unit does not support is a 400 naming it; `keep_alive` and `options.num_ctx`
are accepted (the model stays loaded; the context per conversation is llm.ctx_per_slot).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from app import __version__
from app.api.ollama_request import (
    ChatRequest,
    ShowRequest,
    chat_messages,
    chat_params,
    refuse_unsupported,
    served_model,
)
from app.auth import check_api_key
from app.engines.base import LLMChunk, ToolCall, ToolCallCollector
from app.errors import APIError
from app.gguf import GGUFError, read_header
from app.pipeline import LLMTimings, first_chunk, llm_stream, whole_reply
from app.state import ServiceState, State


async def check_ollama_access(request: Request) -> None:
    """404 where the API is off; no key needed where ollama.allow_unauthenticated; else the
    service's key, as on every other route."""
    settings = request.app.state.vf.settings.ollama
    if not settings.enabled:
        raise APIError(404, "the Ollama API is off on this unit (ollama.enabled: false)")
    if not settings.allow_unauthenticated:
        await check_api_key(request)


router = APIRouter(dependencies=[Depends(check_ollama_access)])


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _counts(t: LLMTimings) -> dict[str, Any]:
    """Ollama's figures: counts, durations in nanoseconds."""
    return {
        "total_duration": int(t.total_s * 1e9),
        "load_duration": 0,
        "prompt_eval_count": t.prompt_tokens,
        "prompt_eval_duration": int(t.ttft_s * 1e9),
        "eval_count": t.completion_tokens,
        "eval_duration": int(max(t.total_s - t.ttft_s, 0.0) * 1e9),
    }


def _done_reason(t: LLMTimings) -> str:
    # Ollama ends a reply with tool calls as "stop" too
    return "stop" if t.finish_reason == "tool_calls" else t.finish_reason


def ollama_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Ollama's shape: the arguments as a JSON object (the engine has the model's JSON text;
    a forced call's grammar makes it an object, a model deciding freely may write junk)."""
    out = []
    for call in calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise APIError(
                502,
                f"the model called {call.name!r} with arguments that are not a JSON object: "
                f"{call.arguments[:200]!r}",
                code="invalid_tool_call",
            )
        out.append({"function": {"name": call.name, "arguments": arguments}})
    return out


@router.post("/api/chat", response_model=None)
async def chat(state: State, req: ChatRequest) -> dict[str, Any] | StreamingResponse:
    model = served_model(state, req.model)
    refuse_unsupported(req)
    params = chat_params(state, req)
    messages = chat_messages(state, req)
    timings = LLMTimings()
    chunks = llm_stream(state, messages, params, timings)
    if not req.stream:
        text, calls = await whole_reply(chunks)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = ollama_tool_calls(calls)
        return {
            "model": model,
            "created_at": _now(),
            "message": message,
            "done": True,
            "done_reason": _done_reason(timings),
            **_counts(timings),
        }
    first = await first_chunk(chunks)
    return StreamingResponse(
        _ndjson(model, chunks, first, timings),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _line(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":")) + "\n"


async def _ndjson(
    model: str, chunks: AsyncGenerator[LLMChunk, None], first: LLMChunk, timings: LLMTimings
) -> AsyncIterator[str]:
    """The text as it comes; tool calls, as Ollama sends them, whole in one line at the end
    (their arguments are only valid JSON once complete); then the `done` line."""

    def part(message: dict[str, Any]) -> str:
        message = {"role": "assistant", "content": "", **message}
        return _line({"model": model, "created_at": _now(), "message": message, "done": False})

    calls = ToolCallCollector()
    async with aclosing(chunks):
        try:
            if first.text:
                yield part({"content": first.text})
            calls.add(first.tool_calls)
            async for chunk in chunks:
                if chunk.text:
                    yield part({"content": chunk.text})
                calls.add(chunk.tool_calls)
            if calls.calls():
                yield part({"tool_calls": ollama_tool_calls(calls.calls())})
        except APIError as exc:
            # inside a 200 stream: the Ollama client raises this line as a ResponseError
            yield _line({"error": exc.message})
            return
    yield _line({
        "model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
        "done": True, "done_reason": _done_reason(timings), **_counts(timings),
    })  # fmt: skip


# -- the model ------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _model_file(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """What the GGUF header says (read once per file version)."""
    try:
        header = read_header(path)
    except (OSError, GGUFError):
        return {"family": "", "info": {}}
    arch = header.architecture
    info = {"general.architecture": arch}
    for key in ("context_length", "block_count", "embedding_length"):
        if (value := header.arch_value(key)) is not None:
            info[f"{arch}.{key}"] = value
    return {"family": arch, "info": info}


def _model(state: ServiceState) -> dict[str, Any]:
    s = state.settings.llm
    path = s.model_path
    try:
        stat = path.stat()
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
    except OSError:  # the server backend's GGUF may live where only llama-server sees it
        size, mtime_ns = 0, 0
    described = _model_file(path, mtime_ns, size) if size else {"family": "", "info": {}}
    modified = datetime.fromtimestamp(mtime_ns / 1e9 if mtime_ns else time.time(), UTC)
    # an opaque id of this model version (Ollama's is its manifest's digest)
    digest = hashlib.sha256(f"{s.model_name}:{size}:{mtime_ns}".encode()).hexdigest()
    family = described["family"]
    return {
        "name": s.model_name,
        "model": s.model_name,
        "modified_at": modified.isoformat().replace("+00:00", "Z"),
        "size": size,
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family] if family else None,
            "parameter_size": "",
            "quantization_level": "",
        },
        "info": described["info"],
    }


def capabilities(state: ServiceState) -> list[str]:
    """tools: llama-server lets the model decide (the embedded backend only takes forced
    calls: ollama.tool_choice "required")."""
    s = state.settings
    tools = s.llm.backend == "server" or s.ollama.tool_choice == "required"
    return ["completion", "tools"] if tools else ["completion"]


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/api/tags")
async def tags(state: State) -> dict[str, Any]:
    model = _model(state)
    model.pop("info")
    return {"models": [model]}


@router.post("/api/show")
async def show(state: State, req: ShowRequest) -> dict[str, Any]:
    served_model(state, req.model)
    model = _model(state)
    info = dict(model["info"])
    # the context a conversation gets here, whatever the model was trained for
    if model["details"]["family"]:
        info[f"{model['details']['family']}.context_length"] = state.settings.llm.ctx_per_slot
    return {
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": model["details"],
        "model_info": info,
        "capabilities": capabilities(state),
        "modified_at": model["modified_at"],
    }
