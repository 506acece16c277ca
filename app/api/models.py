"""GET /v1/models (OpenAI shape) and the model-name check shared by the routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.auth import check_api_key
from app.errors import APIError
from app.state import ServiceState, State

router = APIRouter(dependencies=[Depends(check_api_key)])


def served_models(state: ServiceState) -> dict[str, str]:
    """model id -> kind: each engine's name and its aliases (settings `model_aliases`)"""
    s = state.settings
    names = {"llm": [s.llm.model_name, *s.llm.model_aliases]}
    if s.stt.enabled:
        names["stt"] = [s.stt.model_name, *s.stt.model_aliases]
    if s.tts.enabled:
        names["tts"] = [s.tts.model_name, *s.tts.model_aliases]
    return {name: kind for kind, served in names.items() for name in served}


def require_model(state: ServiceState, requested: str | None, kind: str) -> None:
    if requested is None:
        return
    if served_models(state).get(requested) != kind:
        names = [m for m, k in served_models(state).items() if k == kind]
        raise APIError(
            404,
            f"model {requested!r} is not served here; {kind} models: {', '.join(names)}",
            code="model_not_found",
            param="model",
        )


@router.get("/v1/models")
async def list_models(state: State) -> dict[str, Any]:
    s = state.settings
    own = {"llm": s.llm.model_name, "stt": s.stt.model_name, "tts": s.tts.model_name}
    data = []
    for name, kind in served_models(state).items():
        entry = {"id": name, "object": "model", "owned_by": "voicefleet", "kind": kind}
        if name != own[kind]:
            entry["alias_of"] = own[kind]  # the same engine under a name clients send
        data.append(entry)
    return {"object": "list", "data": data}
