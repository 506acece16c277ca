"""Overload handling: engine gates and the in-flight cap answer clearly, never hang."""

from __future__ import annotations

import asyncio

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
