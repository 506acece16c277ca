"""The service's FastAPI dependencies run on the event loop, not in FastAPI's thread pool.

FastAPI runs a plain `def` dependency (and a plain `def` endpoint) in its worker threads: a
hand-off to a thread and back on every request. With 8 requests at once those hand-offs queue
behind each other, and that was the first-token time the service added at 8 clients on the GPU
box (docs/benchmarks.md). Nothing the routes depend on blocks, so all of it is `async def`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.server import create_app
from app.settings import Settings


def _dependants(d: Dependant) -> Iterator[Dependant]:
    for sub in d.dependencies:
        yield sub
        yield from _dependants(sub)


def _on_the_loop(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        included = getattr(r, "original_router", None)  # an included router (FastAPI 0.165)
        if included is not None:
            yield from _api_routes(included.routes)


def test_no_route_runs_anything_in_the_thread_pool() -> None:
    app = create_app(Settings())
    routes = list(_api_routes(app.routes))
    assert len(routes) > 10  # the whole API is here, not an empty app
    sync = sorted(
        f"{route.path}: {d.call.__qualname__}"
        for route in routes
        for d in [route.dependant, *_dependants(route.dependant)]
        if d.call is not None and not _on_the_loop(d.call)
    )
    assert sync == [], f"plain def dependencies/endpoints (run in FastAPI's thread pool): {sync}"
