"""Per-engine concurrency gates: bounded queues, clear overload errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import APIError


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
    async def slot(self) -> AsyncIterator[None]:
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
        try:
            yield
        finally:
            self.active -= 1
            self._sem.release()
