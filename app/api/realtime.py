"""GET /v1/realtime (WebSocket) and the page at /realtime/. Protocol: app/realtime/protocol.py.

The key is checked and a session place taken *before* accept(): refusals are ordinary HTTP
answers (401, 503 + Retry-After) that any WebSocket client reports as the handshake's status.
"""

from __future__ import annotations

import hmac
from importlib import resources

from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse, Response
from starlette.responses import JSONResponse

from app.errors import error_response
from app.realtime.hub import get_hub
from app.realtime.protocol import BEARER_PREFIX, SUBPROTOCOL
from app.realtime.session import Session
from app.state import ServiceState

router = APIRouter()


def _offered_key(ws: WebSocket) -> str | None:
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in ws.scope.get("subprotocols", []):
        if proto.startswith(BEARER_PREFIX):
            return str(proto[len(BEARER_PREFIX) :])
    return None


def _refusal(ws: WebSocket, state: ServiceState) -> JSONResponse | None:
    key = state.settings.server.api_key
    if key is not None:
        offered = _offered_key(ws)
        if offered is None:
            return error_response(
                401,
                "missing API key: send 'Authorization: Bearer <key>' or the subprotocol "
                f"'{BEARER_PREFIX}<key>'",
                "no_key",
            )
        if not hmac.compare_digest(offered.encode(), key.get_secret_value().encode()):
            return error_response(401, "invalid API key", "invalid_api_key")
    if state.engines is None:
        return error_response(503, "engines are still loading", "not_ready", retry_after=2)
    if state.engines.stt is None or state.engines.tts is None:
        return error_response(
            501, "realtime needs stt and tts; this unit has one disabled", "engine_disabled"
        )
    hub = get_hub(ws.app.state, state)
    if hub.full:
        return error_response(
            503,
            f"all {state.settings.realtime.max_sessions} realtime sessions are in use; "
            "retry shortly",
            "too_many_sessions",
            retry_after=5,
        )
    return None


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    state: ServiceState = ws.app.state.vf
    refusal = _refusal(ws, state)
    if refusal is not None:
        reasons = {503: "refused_full", 501: "refused_disabled"}
        reason = reasons.get(refusal.status_code, "refused_auth")
        get_hub(ws.app.state, state).state.metrics.realtime_closed.labels(reason).inc()
        await ws.send_denial_response(refusal)
        return
    hub = get_hub(ws.app.state, state)
    session_id, slot = hub.open()
    reason = "error"
    try:
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in ws.scope.get("subprotocols", []) else None
        await ws.accept(subprotocol=subprotocol)
        session = Session(ws, state, session_id, slot)
        tts = state.require_tts()
        cfg = state.settings.realtime
        session.send(
            {
                "type": "session.created",
                "session_id": session_id,
                "slot": slot,
                "input_sample_rate": session.decoder.sample_rate,
                "output_sample_rate": tts.sample_rate,
                "max_tokens": session.max_tokens,
                "limits": {
                    "max_frame_bytes": cfg.max_frame_bytes,
                    "max_session_s": cfg.max_session_s,
                    "idle_timeout_s": cfg.idle_timeout_s,
                    "end_silence_ms": cfg.end_silence_ms,
                    "commit_silence_ms": cfg.commit_silence_ms,
                },
            }
        )
        reason = await session.run()
    finally:
        hub.close(session_id, slot, reason)


def _static(name: str) -> bytes:
    return resources.files("app").joinpath("static", name).read_bytes()


@router.get("/realtime/", include_in_schema=False)
async def page() -> HTMLResponse:
    """The talk page (no secrets in it: the key is typed in, or given in the URL fragment)."""
    return HTMLResponse(_static("realtime.html"))


@router.get("/realtime/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    types = {".js": "text/javascript", ".css": "text/css"}
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in types or "/" in name or name.startswith("."):
        return error_response(404, "not found")
    try:
        return Response(_static(name), media_type=types[suffix])
    except FileNotFoundError:
        return error_response(404, "not found")
