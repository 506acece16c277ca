"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.auth import check_api_key
from app.state import State

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no engine is consulted)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """200 only when every enabled engine is loaded and the LLM backend answers."""
    engines = state.engines
    s = state.settings
    checks = {"llm": False}
    for name, enabled in (("stt", s.stt.enabled), ("tts", s.tts.enabled)):
        if enabled:
            checks[name] = engines is not None
    if engines is not None:
        checks["llm"] = await engines.llm.ready()
    if s.wyoming.enabled:
        checks["wyoming"] = state.wyoming is not None and state.wyoming.serving
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
        headers={} if ready else {"Retry-After": "2"},
    )


@router.get("/metrics", dependencies=[Depends(check_api_key)])
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
