"""POST /v1/chat/completions: OpenAI shapes, streaming (SSE) and not."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.models import require_model
from app.auth import check_api_key
from app.engines.base import ChatParams, LLMChunk
from app.errors import APIError
from app.pipeline import LLMTimings, llm_stream, resolve_max_tokens
from app.state import ServiceState, State

router = APIRouter(dependencies=[Depends(check_api_key)])


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)


def to_params(state: ServiceState, req: ChatRequest) -> tuple[list[dict[str, str]], ChatParams]:
    max_tokens = resolve_max_tokens(state, req.max_completion_tokens or req.max_tokens)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in req.messages
    ]
    chars = sum(len(m["content"]) for m in messages)
    if chars > state.settings.limits.max_input_chars:
        raise APIError(
            400,
            f"messages hold {chars} characters; "
            f"the limit is {state.settings.limits.max_input_chars}",
            code="input_too_long",
            param="messages",
        )
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4:
        raise APIError(400, "at most 4 stop sequences", code="invalid_stop", param="stop")
    params = ChatParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=stop,
        seed=req.seed,
    )
    return messages, params


def _usage(t: LLMTimings) -> dict[str, int]:
    return {
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "total_tokens": t.prompt_tokens + t.completion_tokens,
    }


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(state: State, req: ChatRequest) -> dict[str, Any] | StreamingResponse:
    require_model(state, req.model, "llm")
    messages, params = to_params(state, req)
    timings = LLMTimings()
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    base = {"id": completion_id, "created": created, "model": req.model}
    chunks = llm_stream(state, messages, params, timings)

    if not req.stream:
        async with aclosing(chunks):
            text = "".join([c.text async for c in chunks])
        return {
            **base,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": timings.finish_reason,
                }
            ],
            "usage": _usage(timings),
        }

    # Pull the first chunk before answering, so a context overflow or a busy engine is
    # still a proper HTTP error rather than an error inside a 200 stream.
    try:
        first = await anext(chunks)
    except BaseException:
        await chunks.aclose()
        raise
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return StreamingResponse(
        _sse(chunks, first, base, timings, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _sse(
    chunks: AsyncGenerator[LLMChunk, None],
    first: LLMChunk,
    base: dict[str, Any],
    timings: LLMTimings,
    include_usage: bool,
) -> AsyncIterator[str]:
    obj = {**base, "object": "chat.completion.chunk"}

    def delta(d: dict[str, str], finish: str | None = None) -> str:
        return _event({**obj, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

    async with aclosing(chunks):
        yield delta({"role": "assistant", "content": ""})
        try:
            if first.text:
                yield delta({"content": first.text})
            async for chunk in chunks:
                if chunk.text:
                    yield delta({"content": chunk.text})
        except APIError as exc:
            yield _event(
                {"error": {"message": exc.message, "type": "server_error", "code": exc.code}}
            )
            return
    yield delta({}, timings.finish_reason)
    if include_usage:
        yield _event({**obj, "choices": [], "usage": _usage(timings)})
    yield "data: [DONE]\n\n"
