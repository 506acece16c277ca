"""LLM in this process with llama-cpp-python (single machine, tests).

Same llama.cpp tree as the llama-server build (scripts/pins.env). One context, so one
generation at a time; its context is one conversation's (ctx_per_slot).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any

from app.engines.base import ChatParams, ContextOverflowError, LLMChunk
from app.settings import LLMSettings

_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


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

    async def ready(self) -> bool:
        return self._llama is not None

    def _generate(
        self, messages: list[dict[str, str]], params: ChatParams, stop_flag: threading.Event
    ) -> Generator[LLMChunk, None, None]:
        llama = self._llama
        with self._lock:
            try:
                chunks = llama.create_chat_completion(
                    messages=messages,
                    stream=True,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    stop=params.stop or None,
                    seed=params.seed,
                )
                finish: str | None = None
                completion_tokens = 0
                for chunk in chunks:
                    if stop_flag.is_set():
                        chunks.close()
                        return
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    if text:
                        completion_tokens += 1
                        yield LLMChunk(text=text)
            except ValueError as exc:
                match = _OVERFLOW.search(str(exc))
                if match:
                    raise ContextOverflowError(
                        str(exc), prompt_tokens=int(match[1]), n_ctx=int(match[2])
                    ) from exc
                raise
            yield LLMChunk(
                finish_reason=finish or "stop",
                prompt_tokens=max(llama.n_tokens - completion_tokens, 0),
                completion_tokens=completion_tokens,
            )

    async def stream(
        self, messages: list[dict[str, str]], params: ChatParams
    ) -> AsyncGenerator[LLMChunk, None]:
        if self._llama is None:
            raise RuntimeError("embedded LLM not started")
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
