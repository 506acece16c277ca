"""POST /v1/chat/completions: OpenAI shapes, streaming (SSE) and not."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from app.api.chat_request import ChatRequest, to_params
from app.api.models import require_model
from app.auth import check_api_key
from app.engines.base import LLMChunk, ToolCallDelta
from app.errors import APIError
from app.pipeline import LLMTimings, first_chunk, llm_stream, whole_reply
from app.state import State

router = APIRouter(dependencies=[Depends(check_api_key)])


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
        text, calls = await whole_reply(chunks)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [c.to_openai() for c in calls]
        elif message["content"] is None:
            message["content"] = ""
        return {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": timings.finish_reason}],
            "usage": _usage(timings),
        }

    first = await first_chunk(chunks)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return StreamingResponse(
        _sse(chunks, first, base, timings, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _tool_call_delta(d: ToolCallDelta) -> dict[str, Any]:
    """OpenAI's streamed shape: a call's first piece has id, type and the function name."""
    out: dict[str, Any] = {"index": d.index}
    function: dict[str, str] = {"arguments": d.arguments}
    if d.id is not None:
        out["id"] = d.id
        out["type"] = "function"
    if d.name is not None:
        function["name"] = d.name
    out["function"] = function
    return out


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

    def delta(d: dict[str, Any], finish: str | None = None) -> str:
        return _event({**obj, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

    def deltas(chunk: LLMChunk) -> list[str]:
        out = []
        if chunk.text:
            out.append(delta({"content": chunk.text}))
        if chunk.tool_calls:
            out.append(delta({"tool_calls": [_tool_call_delta(d) for d in chunk.tool_calls]}))
        return out

    async with aclosing(chunks):
        # the role and the first piece in one write: one send through uvicorn, not two, on
        # the path that decides the first-token time
        yield delta({"role": "assistant", "content": ""}) + "".join(deltas(first))
        try:
            async for chunk in chunks:
                for event in deltas(chunk):
                    yield event
        except APIError as exc:
            yield _event(
                {"error": {"message": exc.message, "type": "server_error", "code": exc.code}}
            )
            return
    yield delta({}, timings.finish_reason)
    if include_usage:
        yield _event({**obj, "choices": [], "usage": _usage(timings)})
    yield "data: [DONE]\n\n"
