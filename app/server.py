"""The FastAPI application factory, its lifespan, and `voicefleet serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.api import audio, chat, health, models, ollama, realtime, speech, voice
from app.errors import error_response, install_error_handlers
from app.metrics import Metrics
from app.settings import Settings, load_settings
from app.state import Engines, ServiceState

log = logging.getLogger("voicefleet")

_UNCOUNTED = {"/healthz", "/readyz", "/metrics"}
# multipart framing and form fields around an upload
_FORM_OVERHEAD = 64 * 1024
# an oversize body is read and dropped up to this size and time (then the connection is cut)
_DISCARD_LIMIT = 1024 * 1024 * 1024
_DISCARD_TIMEOUT_S = 30.0


def load_engines(settings: Settings) -> Engines:
    """Construct the configured engines (blocking: call from a worker thread)."""
    llm: Any
    if settings.llm.backend == "server":
        from app.engines.llm_server import LlamaServerLLM

        llm = LlamaServerLLM(settings.llm)
    else:
        from app.engines.llm_embedded import EmbeddedLLM

        llm = EmbeddedLLM(settings.llm)
    engines = Engines(llm=llm)
    # disabled engines are not imported: a unit (or a GPU bench box) may lack their packages
    if settings.stt.enabled:
        from app.engines.stt_whisper import WhisperSTT

        engines.stt = WhisperSTT(settings.stt)
    if settings.tts.enabled:
        from app.engines.tts_piper import PiperTTS

        engines.tts = PiperTTS(settings.tts)
    return engines


async def _discard_body(receive: Receive, declared: int) -> None:
    """Read and drop a refused body, so the client still sending it reads the 413: closing a
    socket with unread data makes the kernel answer with a reset (the TCP reset clients saw),
    and most clients (the openai SDK, urllib) send the whole body before they read. A client
    that sent `Expect: 100-continue` (curl) has sent nothing yet: it is not waited for.
    Bodies beyond _DISCARD_LIMIT, or slower than _DISCARD_TIMEOUT_S, are cut off."""
    if declared > _DISCARD_LIMIT:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DISCARD_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body"):
                    return


class InFlightLimit:
    """Caps requests served at once (429 + Retry-After beyond), refuses bodies declared
    larger than the upload limit (413) and counts requests by status."""

    def __init__(self, app: ASGIApp, limit: int, max_upload: int, metrics: Metrics) -> None:
        self.app = app
        self.limit = limit
        self.max_body = max_upload + _FORM_OVERHEAD
        self.metrics = metrics
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNCOUNTED:
            await self.app(scope, receive, send)
            return
        route = scope["path"]
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body:
            # refused on its Content-Length, before any model or parser sees a byte
            self.metrics.requests.labels(route, "413").inc()
            self.metrics.errors.labels(route, "413").inc()
            response = error_response(
                413,
                f"request body is {int(declared)} bytes; uploads are limited to "
                f"{self.max_body - _FORM_OVERHEAD} bytes",
                "upload_too_large",
            )
            response.headers["Connection"] = "close"
            # the answer goes out at once, and the connection ends only after the body
            # (see _discard_body): both a client that reads early and one that sends its
            # whole body first read the 413
            await send(
                {"type": "http.response.start", "status": 413, "headers": response.raw_headers}
            )
            await send({"type": "http.response.body", "body": response.body, "more_body": True})
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _discard_body(receive, int(declared))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self.in_flight >= self.limit:
            self.metrics.requests.labels(route, "429").inc()
            self.metrics.errors.labels(route, "too_many_requests").inc()
            response = error_response(
                429,
                f"the unit is serving {self.in_flight} requests, its limit; retry shortly",
                "too_many_requests",
                retry_after=1,
            )
            await response(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()


def create_app(settings: Settings | None = None, engines: Engines | None = None) -> FastAPI:
    """Build the service. Pass `engines` to reuse already-loaded models (tests, bench)."""
    settings = settings or load_settings()
    state = ServiceState(settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engines is None
        loader: asyncio.Task[None] | None = None

        async def start_wyoming() -> None:
            # same process, once the engines are loaded: the models are loaded once, and the
            # gates, limits and metrics are the HTTP API's own (docs/wyoming.md)
            if settings.wyoming.enabled:
                from app.wyoming.server import WyomingServer

                server = WyomingServer(state)
                await server.start()
                state.wyoming = server

        async def load() -> None:
            try:
                loaded = await asyncio.to_thread(load_engines, settings)
                await loaded.llm.start()
                state.engines = loaded
                log.info("engines loaded (llm backend: %s)", settings.llm.backend)
                await start_wyoming()
            except Exception:
                log.exception("loading the engines failed; /readyz stays 503")
                raise

        if owned:
            # load in the background: /healthz answers at once, /readyz once loaded
            loader = asyncio.create_task(load())
        else:
            state.engines = engines
            await start_wyoming()
        try:
            yield
        finally:
            if loader is not None:
                loader.cancel()
            if state.wyoming is not None:
                await state.wyoming.stop()
                state.wyoming = None
            if owned and state.engines is not None:
                await state.engines.llm.aclose()
            elif state.engines is not None:  # lent: the lender goes on using them
                await state.engines.llm.close_connections()

    app = FastAPI(title="voicefleet", version=__version__, lifespan=lifespan)
    app.state.vf = state
    install_error_handlers(app)
    for module in (health, models, chat, ollama, audio, speech, voice, realtime):
        app.include_router(module.router)
    app.add_middleware(
        InFlightLimit,
        limit=settings.server.max_in_flight,
        max_upload=settings.limits.max_upload_bytes,
        metrics=state.metrics,
    )
    return app


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings(Path(args.config) if args.config else None)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    if host != settings.server.host:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"host": host})}
        )
        Settings.model_validate(settings.model_dump())  # re-check exposure rules
    logging.basicConfig(level=settings.server.log_level.upper())
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.server.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the voice service")
    p.add_argument("--config", help="YAML settings file (else $VOICEFLEET_CONFIG / env)")
    p.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: server.port, 8000)")
    p.set_defaults(func=_serve)
