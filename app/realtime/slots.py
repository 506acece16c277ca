"""llama-server slot ids, one per live conversation, so each keeps its KV cache warm.

llama-server runs `parallel` slots (0..parallel-1); a request with `id_slot` runs in that
slot, and with `cache_prompt` only the tokens after the longest cached prefix are
prefilled. A session holds its slot for its whole life. More sessions than slots: the extra
ones get None (llama-server picks an idle slot; their prefix may have to be recomputed).
The embedded backend has one context and no slots.
"""

from __future__ import annotations

from collections import deque


class SlotPool:
    def __init__(self, size: int) -> None:
        self._free: deque[int] = deque(range(size))

    def acquire(self) -> int | None:
        return self._free.popleft() if self._free else None

    def release(self, slot: int | None) -> None:
        if slot is not None and slot not in self._free:
            # to the back: a slot just released keeps its cache a while longer
            self._free.append(slot)

    @property
    def free(self) -> int:
        return len(self._free)
