"""API key check (`Authorization: Bearer KEY`) for every route but health/readiness."""

from __future__ import annotations

import hmac

from fastapi import Request

from app.errors import APIError


async def check_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries the configured key.

    `async def` although it never awaits: FastAPI runs a plain `def` dependency in its thread
    pool, a hop to a worker thread and back on every request (bench/service_fanin.py)."""
    key = request.app.state.vf.settings.server.api_key
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="no_key")
    if not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        raise APIError(401, "invalid API key", code="invalid_api_key")
