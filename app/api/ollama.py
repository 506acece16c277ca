"""The Ollama API subset Home Assistant's Ollama integration (and the official `ollama`
client) uses: GET /api/version, GET /api/tags, POST /api/show, POST /api/chat (NDJSON
stream or one JSON object).

Over the same LLM engine, gate, limits and metrics as /v1/chat/completions
(app/pipeline.llm_stream). Auth: the service's Bearer key like every route, except where
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
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app import __version__
from app.auth import check_api_key
from app.engines.base import ChatParams, LLMChunk
from app.errors import APIError
from app.gguf import GGUFError, read_header
from app.pipeline import LLMTimings, llm_stream, resolve_max_tokens
from app.state import ServiceState, State

# options a request may set, and how each maps onto ChatParams
SUPPORTED_OPTIONS = ("num_ctx", "num_predict", "temperature", "top_p", "seed", "stop")
MAX_STOP = 4


def check_ollama_access(request: Request) -> None:
    """404 where the API is off; no key needed where ollama.allow_unauthenticated; else the
    service's key, as on every other route."""
    settings = request.app.state.vf.settings.ollama
    if not settings.enabled:
        raise APIError(404, "the Ollama API is off on this unit (ollama.enabled: false)")
    if not settings.allow_unauthenticated:
        check_api_key(request)


router = APIRouter(dependencies=[Depends(check_ollama_access)])


class Forbid(BaseModel):
    # a field this unit does not know is a 400 naming it, never dropped
    model_config = ConfigDict(extra="forbid")


class ChatMessage(Forbid):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    images: list[Any] | None = None
    tool_name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatRequest(Forbid):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    stream: bool = True
    think: bool | str | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ShowRequest(Forbid):
    model: str
    verbose: bool | None = None


def _unsupported(param: str, message: str) -> APIError:
    return APIError(400, f"{param}: {message}", code="unsupported_field", param=param)


def served_model(state: ServiceState, requested: str) -> str:
    """The LLM's name; Ollama clients may add the default tag (`name:latest`)."""
    name = state.settings.llm.model_name
    if requested not in (name, f"{name}:latest"):
        raise APIError(
            404, f"model {requested!r} not found; this unit serves {name!r}", param="model"
        )
    return name


def _refuse_unsupported(req: ChatRequest) -> None:
    if req.think not in (None, False, ""):
        raise _unsupported("think", f"{req.think!r}: this model does not think")
    if req.format not in (None, ""):
        raise _unsupported("format", "structured output is not supported on this unit")
    if req.logprobs or req.top_logprobs:
        raise _unsupported("logprobs", "log probabilities are not returned by this unit")
    if req.tools:
        raise _unsupported("tools", "tool calls are not supported on this unit yet")
    for i, m in enumerate(req.messages):
        if m.images:
            raise _unsupported(f"messages.{i}.images", "this model reads no images")
        if m.thinking:
            raise _unsupported(f"messages.{i}.thinking", "this model does not think")
        if m.role == "tool" or m.tool_calls or m.tool_name:
            raise _unsupported(f"messages.{i}", "tool messages are not supported yet")
    unknown = sorted(set(req.options or {}) - set(SUPPORTED_OPTIONS))
    if unknown:
        raise APIError(
            400,
            f"options not supported on this unit: {', '.join(unknown)} "
            f"(supported: {', '.join(SUPPORTED_OPTIONS)})",
            code="unsupported_option",
            param=f"options.{unknown[0]}",
        )


def _option(options: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = options.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise APIError(400, f"options.{key}: {value!r} is not a number", param=f"options.{key}")
    return value


def chat_params(state: ServiceState, req: ChatRequest) -> ChatParams:
    options = req.options or {}
    _option(options, "num_ctx", int)
    num_predict = _option(options, "num_predict", int)
    # Ollama's -1 (no limit) and -2 (fill the context): the most this unit gives
    if num_predict is not None and num_predict <= 0:
        num_predict = state.settings.llm.max_tokens_cap
    temperature = _option(options, "temperature", (int, float))
    top_p = _option(options, "top_p", (int, float))
    if temperature is not None and not 0 <= temperature <= 2:
        raise APIError(400, "options.temperature: from 0 to 2", param="options.temperature")
    if top_p is not None and not 0 < top_p <= 1:
        raise APIError(400, "options.top_p: above 0, at most 1", param="options.top_p")
    stop = options.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise APIError(400, "options.stop: a list of strings", param="options.stop")
    if len(stop) > MAX_STOP:
        raise APIError(400, f"options.stop: at most {MAX_STOP}", param="options.stop")
    return ChatParams(
        max_tokens=resolve_max_tokens(state, num_predict),
        temperature=0.7 if temperature is None else float(temperature),
        top_p=0.95 if top_p is None else float(top_p),
        stop=stop,
        seed=_option(options, "seed", int),
    )


def chat_messages(state: ServiceState, req: ChatRequest) -> list[dict[str, str]]:
    messages = [{"role": m.role, "content": m.content} for m in req.messages]
    chars = sum(len(m["content"]) for m in messages)
    limit = state.settings.limits.max_input_chars
    if chars > limit:
        raise APIError(
            400,
            f"messages hold {chars} characters; the limit is {limit}",
            code="input_too_long",
            param="messages",
        )
    return messages


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


@router.post("/api/chat", response_model=None)
async def chat(state: State, req: ChatRequest) -> dict[str, Any] | StreamingResponse:
    model = served_model(state, req.model)
    _refuse_unsupported(req)
    params = chat_params(state, req)
    messages = chat_messages(state, req)
    timings = LLMTimings()
    chunks = llm_stream(state, messages, params, timings)
    if not req.stream:
        async with aclosing(chunks):
            text = "".join([c.text async for c in chunks])
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": timings.finish_reason,
            **_counts(timings),
        }
    # the first token before the 200: a busy engine or a context overflow is an HTTP error
    try:
        first = await anext(chunks)
    except BaseException:
        await chunks.aclose()
        raise
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
    def part(content: str) -> str:
        message = {"role": "assistant", "content": content}
        return _line({"model": model, "created_at": _now(), "message": message, "done": False})

    async with aclosing(chunks):
        try:
            if first.text:
                yield part(first.text)
            async for chunk in chunks:
                if chunk.text:
                    yield part(chunk.text)
        except APIError as exc:
            # inside a 200 stream: the Ollama client raises this line as a ResponseError
            yield _line({"error": exc.message})
            return
    yield _line({
        "model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
        "done": True, "done_reason": timings.finish_reason, **_counts(timings),
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
        "capabilities": ["completion"],
        "modified_at": model["modified_at"],
    }
