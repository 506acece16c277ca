"""Overload handling: engine gates and the in-flight cap answer clearly, never hang."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.errors import APIError
from app.limits import EngineGate


async def test_gate_refuses_when_queue_full() -> None:
    gate = EngineGate("stt", concurrency=1, max_queue=1, timeout_s=5)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(2)]
    try:
        for _ in range(100):
            if gate.active == 1 and gate.waiting == 1:
                break
            await asyncio.sleep(0.01)
        assert gate.active == 1 and gate.waiting == 1
        with pytest.raises(APIError) as err:
            async with gate.slot():
                pass
        assert err.value.status == 503 and err.value.retry_after
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert gate.active == 0 and gate.waiting == 0


async def test_gate_times_out_waiting() -> None:
    gate = EngineGate("llm", concurrency=1, max_queue=4, timeout_s=0.05)
    async with gate.slot():
        with pytest.raises(APIError) as err:
            async with gate.slot():
                pass
    assert err.value.code == "engine_overloaded"
    async with gate.slot():  # free again
        assert gate.active == 1


async def test_a_cancelled_caller_keeps_its_place_until_its_thread_ends() -> None:
    """A barge-in or a client gone cancels the caller, not the engine's worker thread: the
    place stays taken until the thread ends, so the next caller does not run beside it."""
    gate = EngineGate("stt", concurrency=1, max_queue=4, timeout_s=5)
    started, finish = threading.Event(), threading.Event()
    ran: list[str] = []

    def work(name: str) -> str:
        started.set()
        if name == "first":
            finish.wait(10)
        ran.append(name)
        return name

    async def call(name: str) -> str:
        async with gate.slot() as slot:
            return await slot.run(work, name)

    first = asyncio.create_task(call("first"))
    assert await asyncio.to_thread(started.wait, 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert gate.active == 1  # the caller is gone; its thread still runs
    second = asyncio.create_task(call("second"))
    await asyncio.sleep(0.3)
    assert not second.done() and gate.waiting == 1 and ran == []
    finish.set()
    assert await asyncio.wait_for(second, 5) == "second"
    assert ran == ["first", "second"]  # one after the other, never side by side
    assert gate.active == 0 and gate.waiting == 0


async def test_a_failing_thread_of_a_cancelled_caller_still_frees_its_place() -> None:
    gate = EngineGate("tts", concurrency=1, max_queue=4, timeout_s=5)
    started, finish = threading.Event(), threading.Event()

    def broken() -> None:
        started.set()
        finish.wait(10)
        raise RuntimeError("engine failed after its caller left")

    async def call() -> None:
        async with gate.slot() as slot:
            await slot.run(broken)

    task = asyncio.create_task(call())
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    finish.set()
    async with asyncio.timeout(5), gate.slot() as slot:  # freed once the thread ended
        assert await slot.run(lambda: 42) == 42
    # and a caller still there gets the engine's error as raised
    with pytest.raises(RuntimeError, match="engine failed"):
        async with gate.slot() as slot:
            finish.set()
            await slot.run(broken)
    assert gate.active == 0
