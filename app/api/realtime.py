"""The realtime WebSockets and the page at /realtime/.

- GET /v1/realtime?model=...: the OpenAI Realtime API (app/realtime/openai_wire.py), GA
  event names, or the beta ones with `OpenAI-Beta: realtime=v1` (or the browser subprotocol
  `openai-beta.realtime-v1`).
- GET /v1/voicefleet/realtime: the project's first protocol (app/realtime/protocol.py), kept
  while `voicefleet bench --realtime` compares the two.

Both run the same engine (app/realtime/session.py). The key is checked and a session place
taken *before* accept(): refusals are ordinary HTTP answers (401, 503 + Retry-After) that any
WebSocket client reports as the handshake's status. Keys: `Authorization: Bearer KEY`, or
for browsers (which cannot set headers on a WebSocket) the subprotocol
`openai-insecure-api-key.KEY` (OpenAI's form) or `bearer.KEY` (the first protocol's).
"""

from __future__ import annotations

import hmac
from importlib import resources

from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse, Response
from starlette.responses import JSONResponse

from app.errors import error_response
from app.realtime.hub import get_hub
from app.realtime.openai_wire import OpenAIWire
from app.realtime.protocol import BEARER_PREFIX, SUBPROTOCOL
from app.realtime.session import Session, WireFactory
from app.realtime.voicefleet_wire import VoicefleetWire
from app.state import ServiceState

OPENAI_KEY_PREFIX = "openai-insecure-api-key."
OPENAI_SUBPROTOCOL = "realtime"
OPENAI_BETA_SUBPROTOCOL = "openai-beta.realtime-v1"

router = APIRouter()


def _offered_key(ws: WebSocket) -> str | None:
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in ws.scope.get("subprotocols", []):
        for prefix in (BEARER_PREFIX, OPENAI_KEY_PREFIX):
            if proto.startswith(prefix):
                return str(proto[len(prefix) :])
    return None


def _refusal(ws: WebSocket, state: ServiceState) -> JSONResponse | None:
    key = state.settings.server.api_key
    if key is not None:
        offered = _offered_key(ws)
        if offered is None:
            return error_response(
                401,
                "missing API key: send 'Authorization: Bearer <key>' or the subprotocol "
                f"'{OPENAI_KEY_PREFIX}<key>'",
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


async def _serve(ws: WebSocket, wire: WireFactory, subprotocol: str | None) -> None:
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
        offered = subprotocol in ws.scope.get("subprotocols", [])
        await ws.accept(subprotocol=subprotocol if offered else None)
        reason = await Session(ws, state, session_id, slot, wire).run()
    finally:
        hub.close(session_id, slot, reason)


@router.websocket("/v1/realtime")
async def openai_realtime(ws: WebSocket, model: str = "voicefleet") -> None:
    """The OpenAI Realtime API; `model` is echoed (the unit serves its one model set)."""
    protocols = ws.scope.get("subprotocols", [])
    beta = "realtime=v1" in ws.headers.get("openai-beta", "") or (
        OPENAI_BETA_SUBPROTOCOL in protocols
    )
    await _serve(ws, lambda s: OpenAIWire(s, beta, model), OPENAI_SUBPROTOCOL)


@router.websocket("/v1/voicefleet/realtime")
async def voicefleet_realtime(ws: WebSocket) -> None:
    """The first protocol (app/realtime/protocol.py), for the bench's comparison."""
    await _serve(ws, VoicefleetWire, SUBPROTOCOL)


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
