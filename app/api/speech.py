"""OpenAI-compatible text-to-speech: POST /v1/audio/speech.

response_format mp3 (OpenAI's default) | opus | aac | flac | wav | pcm, streamed as it is
synthesised: the text is cut into sentences, and each sentence's audio is encoded and sent
as soon as piper has spoken it (the first audio waits for the first sentence only).
stream_format "sse": the same audio as base64 `speech.audio.delta` events, then
`speech.audio.done`. `speed` is piper's length scale; `instructions` (tone for OpenAI's
gpt-4o-mini-tts) is accepted and has no effect on piper voices.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import Field

from app.api.models import require_model
from app.api.openai_fields import OpenAIRequest
from app.audio_encode import MEDIA_TYPES, SpeechEncoder, SpeechFormat
from app.auth import check_api_key
from app.errors import APIError
from app.pipeline import synthesize_stream
from app.realtime.sentences import SentenceChunker
from app.state import ServiceState, State

router = APIRouter(dependencies=[Depends(check_api_key)])

# OpenAI's voice names are accepted and spoken with the unit's configured voice, so
# unmodified clients work.
OPENAI_VOICES = {
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
}  # fmt: skip
# one piece of text piper speaks at once (sentences longer than this are cut at a clause)
_MAX_PIECE_CHARS = 400
# the start of each sentence's audio encoded and sent ahead of the rest
_HEAD_S = 0.25


class SpeechRequest(OpenAIRequest):
    model: str
    input: str = Field(min_length=1)
    voice: str = "default"
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    # a speaking style for OpenAI's gpt-4o-mini-tts; piper voices have one style
    instructions: str | None = Field(None, max_length=4096)
    stream_format: Literal["audio", "sse"] = "audio"


def sentences(text: str) -> list[str]:
    """The text in pieces piper speaks one after the other (sentence by sentence)."""
    chunker = SentenceChunker(max_chars=_MAX_PIECE_CHARS, first_min_chars=len(text) + 1)
    return [*chunker.push(text), *chunker.flush()]


@router.post("/v1/audio/speech", response_model=None)
async def speech(state: State, body: SpeechRequest) -> StreamingResponse:
    tts = state.require_tts()
    require_model(state, body.model, "tts")
    if body.voice not in (tts.voice_name, "default") and body.voice not in OPENAI_VOICES:
        raise APIError(
            400, f"unknown voice {body.voice!r}; this unit speaks {tts.voice_name!r}",
            code="unknown_voice", param="voice",
        )  # fmt: skip
    limit = state.settings.limits.max_speech_chars
    if len(body.input) > limit:
        raise APIError(
            400, f"input is {len(body.input)} characters; the limit is {limit}",
            code="input_too_long", param="input",
        )  # fmt: skip
    if not body.input.strip():
        raise APIError(400, "input is blank", code="empty_input", param="input")
    audio = encoded_speech(state, body.input, body.speed, body.response_format)
    # the first audio is made before answering: a busy engine is still an HTTP error (503)
    try:
        first = await anext(audio, b"")
    except BaseException:
        await audio.aclose()
        raise
    headers = {"X-Sample-Rate": str(tts.sample_rate)}
    media_type = MEDIA_TYPES[body.response_format]
    if body.response_format == "pcm":
        media_type = f"audio/L16;rate={tts.sample_rate};channels=1"
    if body.stream_format == "sse":
        return StreamingResponse(
            _sse(first, audio),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return StreamingResponse(_prepend(first, audio), media_type=media_type, headers=headers)


async def encoded_speech(
    state: ServiceState, text: str, speed: float, fmt: SpeechFormat
) -> AsyncGenerator[bytes, None]:
    """The text spoken sentence by sentence, each sentence encoded as soon as it is spoken.
    Encoding runs in worker threads; the encoder is set up while the first sentence is
    synthesised, and a sentence's first _HEAD_S seconds are encoded and sent on their own,
    so an encoded format's first audio waits for little more than wav's."""
    tts = state.require_tts()
    encoder_ready = asyncio.ensure_future(asyncio.to_thread(SpeechEncoder, fmt, tts.sample_rate))
    try:
        head = int(_HEAD_S * tts.sample_rate)
        async with aclosing(synthesize_stream(state, sentences(text), speed)) as pcm_chunks:
            async for pcm in pcm_chunks:
                encoder = await encoder_ready
                for part in (pcm[:head], pcm[head:]):
                    data = await asyncio.to_thread(encoder.feed, part) if len(part) else b""
                    if data:
                        yield data
        encoder = await encoder_ready
        tail = await asyncio.to_thread(encoder.close)
        if tail:
            yield tail
    finally:
        if not encoder_ready.done():
            encoder_ready.cancel()


async def _prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    async with aclosing(rest):
        yield first
        async for data in rest:
            yield data


def _event(payload: dict[str, str]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _sse(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[str]:
    async for data in _prepend(first, rest):
        yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    yield _event({"type": "speech.audio.done"})
