"""Per-engine concurrency gates: bounded queues, clear overload errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from app.errors import APIError

T = TypeVar("T")


class EngineGate:
    """At most `concurrency` users of an engine; at most `max_queue` waiting.

    A full queue is refused at once (503 + Retry-After) instead of piling up latency; a
    wait longer than `timeout_s` is refused the same way.
    """

    def __init__(self, name: str, concurrency: int, max_queue: int, timeout_s: float) -> None:
        self.name = name
        self.concurrency = concurrency
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._sem = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.active = 0

    def _overloaded(self, why: str) -> APIError:
        return APIError(
            503,
            f"{self.name} engine is busy ({why}); retry shortly",
            code="engine_overloaded",
            retry_after=1.0,
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """One place at the engine. Blocking engine work goes through `Slot.run` (a worker
        thread): a caller cancelled mid-call (barge-in, a client gone) returns at once, but the
        thread cannot be stopped, so the place stays taken until that thread ends; releasing it
        earlier let the next caller start beside it, over the engine's concurrency."""
        if self._sem.locked() and self.waiting >= self.max_queue:
            raise self._overloaded(f"{self.active} running, {self.waiting} queued")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.timeout_s)
        except TimeoutError:
            raise self._overloaded(f"waited {self.timeout_s:.0f} s") from None
        finally:
            self.waiting -= 1
        self.active += 1
        held = Slot(self._release)
        try:
            yield held
        finally:
            held.close()

    def _release(self) -> None:
        self.active -= 1
        self._sem.release()


class Slot:
    """A held place at an engine (EngineGate.slot); released once, when its work is over."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._thread: asyncio.Future[Any] | None = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker thread (asyncio.to_thread, as its own task)."""
        thread = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        self._thread = thread
        result = await asyncio.shield(thread)  # a cancel leaves the thread's future running
        self._thread = None
        return result

    def close(self) -> None:
        thread = self._thread
        if thread is None or thread.done():
            self._release()
            return
        thread.add_done_callback(self._release_after)

    def _release_after(self, thread: asyncio.Future[Any]) -> None:
        if not thread.cancelled():
            thread.exception()  # retrieved: nobody awaits a cancelled caller's thread
        self._release()
