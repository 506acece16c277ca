"""LLM in this process with llama-cpp-python (single machine, tests).

Same llama.cpp tree as the llama-server build (scripts/pins.env). One context, so one
generation at a time; its context is one conversation's (ctx_per_slot).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any

from app.engines.base import (
    ChatMessage,
    ChatParams,
    ContextOverflowError,
    LLMChunk,
    Prefilled,
    ToolCallDelta,
    UnsupportedRequestError,
)
from app.engines.forced_tool import ForcedCall
from app.settings import LLMSettings

_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def tool_arguments(params: ChatParams, forced: ForcedCall | None) -> dict[str, Any]:
    """tools / response_format as llama-cpp-python takes them, or UnsupportedRequestError.
    With tool_choice "auto" llama-cpp-python renders the tools into the prompt but never
    parses a call out of the reply, so "auto" with tools is refused; forced calls (a named
    function, "required") are made by a JSON-schema grammar (app/engines/forced_tool.py)."""
    if params.tools and params.tool_choice == "auto":
        raise UnsupportedRequestError(
            "tool_choice 'auto' with tools is not supported by the embedded LLM backend "
            "(llama-cpp-python does not parse tool calls out of a free reply): set "
            "tool_choice to 'required' or name the function, or run llm.backend: server",
            param="tool_choice",
        )
    args: dict[str, Any] = {}
    if forced is not None:
        # the tools are shown to the model by the template; the grammar makes the call
        args["tools"] = [t.to_openai() for t in forced.tools]
        args["response_format"] = {"type": "json_object", "schema": forced.schema}
        return args
    # tool_choice "none": the reply is text, so the tools are not offered at all
    fmt = params.response_format
    if fmt is not None:
        # llama-cpp-python's json_object takes an optional schema (a grammar built from it)
        args["response_format"] = {"type": "json_object"}
        if fmt.schema is not None:
            args["response_format"]["schema"] = fmt.schema
    return args


def _for_template(messages: list[ChatMessage]) -> list[ChatMessage]:
    """llama-cpp-python hands messages to the GGUF's template as they are: templates that
    know no tool calls concatenate `content` (None fails) and skip `tool_calls`, so an
    assistant's calls are written into its content, as JSON, for the model to see."""
    out = []
    for m in messages:
        if m.get("content") is None:
            calls = [c["function"] for c in m.get("tool_calls") or []]
            m = {**m, "content": json.dumps(calls) if calls else ""}
        out.append(m)
    return out


class _ToolCallDeltas:
    """llama-cpp-python repeats the call's id and name in every streamed piece; OpenAI's
    shape (and ToolCallDelta) carries them on the first piece only."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def __call__(self, delta: dict[str, Any]) -> list[ToolCallDelta]:
        out = []
        for call in delta.get("tool_calls") or []:
            index = int(call.get("index", 0))
            function = call.get("function") or {}
            first = index not in self._seen
            self._seen.add(index)
            out.append(
                ToolCallDelta(
                    index=index,
                    id=call.get("id") if first else None,
                    name=function.get("name") if first else None,
                    arguments=function.get("arguments") or "",
                )
            )
        return out


class EmbeddedLLM:
    def __init__(self, settings: LLMSettings) -> None:
        if not settings.model_path.is_file():
            raise FileNotFoundError(f"LLM model {settings.model_path} not found")
        self.model_name = settings.model_name
        self.ctx_per_slot = settings.ctx_per_slot
        self._settings = settings
        self._llama: Any = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        from llama_cpp import Llama  # heavy import, only for this backend

        s = self._settings
        self._llama = await asyncio.to_thread(
            Llama,
            model_path=str(s.model_path),
            n_ctx=s.ctx_per_slot,
            n_threads=s.threads or None,
            n_batch=512,
            n_ubatch=256,
            flash_attn=True,
            verbose=False,
        )

    async def aclose(self) -> None:
        self._llama = None

    async def close_connections(self) -> None:
        """In process: no connections."""

    async def ready(self) -> bool:
        return self._llama is not None

    def _generate(
        self, messages: list[ChatMessage], params: ChatParams, stop_flag: threading.Event
    ) -> Generator[LLMChunk, None, None]:
        llama = self._llama
        tool_deltas = _ToolCallDeltas()
        forced = ForcedCall(params) if ForcedCall.wanted(params) else None
        with self._lock:
            try:
                chunks = llama.create_chat_completion(
                    messages=_for_template(messages),
                    stream=True,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    stop=params.stop or None,
                    seed=params.seed,
                    **tool_arguments(params, forced),
                )
                finish: str | None = None
                completion_tokens = 0
                for chunk in chunks:
                    if stop_flag.is_set():
                        chunks.close()
                        return
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content") or ""
                    calls = tool_deltas(choice["delta"])
                    finish = choice.get("finish_reason") or finish
                    if forced is not None and text:
                        calls, text = forced.feed(text), ""
                    if text or calls:
                        completion_tokens += 1
                        yield LLMChunk(text=text, tool_calls=calls)
            except ValueError as exc:
                match = _OVERFLOW.search(str(exc))
                if match:
                    raise ContextOverflowError(
                        str(exc), prompt_tokens=int(match[1]), n_ctx=int(match[2])
                    ) from exc
                raise
            if forced is not None:
                tail = forced.finish()
                if tail is not None:
                    yield tail
                finish = forced.finish_reason(finish)
            yield LLMChunk(
                finish_reason=finish or "stop",
                prompt_tokens=max(llama.n_tokens - completion_tokens, 0),
                completion_tokens=completion_tokens,
            )

    async def stream(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[LLMChunk, None]:
        if self._llama is None:
            raise RuntimeError("embedded LLM not started")
        # refuse what this backend cannot do before any work
        tool_arguments(params, ForcedCall(params) if ForcedCall.wanted(params) else None)
        stop_flag = threading.Event()
        gen = self._generate(messages, params, stop_flag)
        sentinel = object()
        try:
            while True:
                # one worker-thread hop per token keeps the event loop free
                item = await asyncio.to_thread(next, gen, sentinel)
                if item is sentinel:
                    return
                assert isinstance(item, LLMChunk)
                yield item
        finally:
            stop_flag.set()
            await asyncio.to_thread(gen.close)

    async def prefill(self, messages: list[ChatMessage], params: ChatParams) -> Prefilled | None:
        """One context shared by every conversation: there is no slot of one to fill."""
        return None
