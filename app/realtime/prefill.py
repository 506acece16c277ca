"""Prefilling the session's llama-server slot while the user is still speaking
(`realtime.prefill_llm`).

When an early STT pass (at a pause, `realtime.early_stt_silence_ms`) has the words said so
far, the session offers the conversation with them as the pending user message: the same
messages and parameters its reply would send. llama-server evaluates that prompt into the
slot's KV cache and generates nothing (`n_predict: 0`, LlamaServerLLM.prefill). When the
user stops, the reply's request shares that prefix (history + the words so far), so
llama-server evaluates only what follows it: the last words and the assistant header.

One prefill per session at a time; words that arrive while one runs are sent after it (the
latest only). A reply about to send its request calls `settle()`: nothing more is started
and the prefill in flight is waited for, not cancelled. That is what llama-server would do
anyway — a task for a slot that is busy is deferred until the slot is free
(server-context.cpp, "requested slot is unavailable, defer task") — and cancelling would be
slower: llama-server notices a closed connection only when its reader's poll times out
(HTTP_POLLING_SECONDS, 1 s), and the slot stays busy until then. Waiting here also keeps the
order: a prefill never runs after the reply and so never replaces the reply's cache with an
older prompt. The prefill's tokens are the reply's prefix, so the wait is work the reply's
request would do otherwise. Speech resuming, or a barge-in, drops nothing: the words so far
are still the prefix of what comes. A failed prefill (llama-server busy, down, the prompt
too long) is ignored; the reply then evaluates its prompt in full, as without prefill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from app.engines.base import ChatMessage, ChatParams
from app.pipeline import llm_prefill
from app.state import ServiceState

log = logging.getLogger("voicefleet.realtime")


@dataclass
class Settled:
    """What the prefills since the last reply did, for that reply's timings."""

    prefills: int
    tokens: int  # prompt tokens they evaluated
    wait_ms: float  # the reply's wait for one still running


class Prefill:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.task: asyncio.Task[None] | None = None
        self._next: tuple[list[ChatMessage], ChatParams] | None = None
        self._runs = 0
        self._tokens = 0
        self._closed = False

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def offer(self, messages: list[ChatMessage], params: ChatParams) -> None:
        """Prefill `messages` now, or after the prefill in flight (replacing any offer still
        waiting: the newest words cover the older ones)."""
        if self._closed:  # an early pass ending after the session did
            return
        if self.running:
            self._next = (messages, params)
            return
        self.task = asyncio.create_task(self._run(messages, params))

    async def _run(self, messages: list[ChatMessage], params: ChatParams) -> None:
        while True:
            try:
                done = await llm_prefill(self.state, messages, params)
            except Exception as exc:  # a head start that failed; the reply does the work
                log.debug("prefill of slot %s failed: %s", params.slot, exc)
                done = None
            if done is not None:
                self._runs += 1
                self._tokens += done.evaluated
            if self._next is None:
                return
            (messages, params), self._next = self._next, None

    async def settle(self) -> Settled:
        """A reply is about to send its request: start nothing more, let the prefill in
        flight end (waiting does not cancel it), and hand over the counts."""
        self._next = None
        start = time.perf_counter()
        if self.task is not None and not self.task.done():
            await asyncio.wait({self.task})
        settled = Settled(self._runs, self._tokens, (time.perf_counter() - start) * 1000)
        self._runs = self._tokens = 0
        return settled

    def close(self) -> None:
        """The session is over: nothing more is sent. One in flight is left to end (in its
        prompt's time): cancelled, it would keep the slot busy until llama-server's next
        poll (up to 1 s) for whichever session gets the slot next."""
        self._closed = True
        self._next = None
