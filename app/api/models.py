"""GET /v1/models (OpenAI shape) and the model-name check shared by the routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.auth import check_api_key
from app.errors import APIError
from app.state import ServiceState, State

router = APIRouter(dependencies=[Depends(check_api_key)])


def served_models(state: ServiceState) -> dict[str, str]:
    """model id -> kind"""
    s = state.settings
    served = {s.llm.model_name: "llm"}
    if s.stt.enabled:
        served[s.stt.model_name] = "stt"
    if s.tts.enabled:
        served[s.tts.model_name] = "tts"
    return served


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
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "owned_by": "voicefleet", "kind": kind}
            for name, kind in served_models(state).items()
        ],
    }
