"""The service's realtime sessions: admission (max_sessions) and the llama-server slot pool."""

from __future__ import annotations

import uuid

from starlette.datastructures import State as AppState

from app.realtime.slots import SlotPool
from app.state import ServiceState


class RealtimeHub:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        llm = state.settings.llm
        self.slots = SlotPool(llm.parallel if llm.backend == "server" else 0)
        self.sessions: set[str] = set()

    @property
    def full(self) -> bool:
        return len(self.sessions) >= self.state.settings.realtime.max_sessions

    def open(self) -> tuple[str, int | None]:
        session_id = f"rt-{uuid.uuid4().hex[:12]}"
        self.sessions.add(session_id)
        self.state.metrics.realtime_sessions.set(len(self.sessions))
        return session_id, self.slots.acquire()

    def close(self, session_id: str, slot: int | None, reason: str) -> None:
        self.sessions.discard(session_id)
        self.slots.release(slot)
        self.state.metrics.realtime_sessions.set(len(self.sessions))
        self.state.metrics.realtime_closed.labels(reason).inc()


def get_hub(app_state: AppState, state: ServiceState) -> RealtimeHub:
    """One hub per app, created on first use."""
    hub = getattr(app_state, "realtime", None)
    if not isinstance(hub, RealtimeHub):
        hub = RealtimeHub(state)
        app_state.realtime = hub
    return hub
