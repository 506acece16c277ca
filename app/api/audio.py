"""OpenAI-compatible speech endpoints: /v1/audio/transcriptions and /v1/audio/speech."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.models import require_model
from app.audio import wav_bytes
from app.auth import check_api_key
from app.errors import APIError
from app.pipeline import read_audio_upload, synthesize, transcribe
from app.state import State

router = APIRouter(dependencies=[Depends(check_api_key)])

# OpenAI's voice names are accepted and spoken with the unit's configured voice, so
# unmodified clients work.
OPENAI_VOICES = {
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse",
}  # fmt: skip


@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(
    state: State,
    file: Annotated[UploadFile, File()],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form(max_length=8)] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> dict[str, Any] | PlainTextResponse:
    state.require_stt()  # a disabled engine is named before the model is checked
    require_model(state, model, "stt")
    if response_format not in ("json", "text", "verbose_json"):
        raise APIError(
            400,
            f"response_format {response_format!r} is not supported: json, text, verbose_json",
            code="unsupported_format",
            param="response_format",
        )
    audio = await read_audio_upload(state, file)
    result, _ = await transcribe(
        state, audio, language=language, prompt=prompt, temperature=temperature
    )
    if response_format == "text":
        return PlainTextResponse(result.text)
    if response_format == "json":
        return {"text": result.text}
    return {
        "task": "transcribe",
        "language": result.language,
        "duration": result.duration_s,
        "text": result.text,
        "segments": [
            {"id": i, "start": s.start, "end": s.end, "text": s.text}
            for i, s in enumerate(result.segments)
        ],
    }


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str = Field(min_length=1)
    voice: str = "default"
    response_format: Literal["wav", "pcm"] = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)


@router.post("/v1/audio/speech", response_model=None)
async def speech(state: State, body: SpeechRequest) -> Response:
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
    headers = {"X-Sample-Rate": str(tts.sample_rate)}
    if body.response_format == "pcm":
        return StreamingResponse(
            _pcm_stream(state, body.input, body.speed),
            media_type=f"audio/L16;rate={tts.sample_rate};channels=1",
            headers=headers,
        )
    pcm, _ = await synthesize(state, body.input, body.speed)
    return Response(wav_bytes(pcm, tts.sample_rate), media_type="audio/wav", headers=headers)


async def _pcm_stream(state: State, text: str, speed: float) -> AsyncIterator[bytes]:
    """Raw 16-bit PCM streamed sentence by sentence as it is synthesised."""
    tts = state.require_tts()
    async with state.tts_gate.slot() as slot:
        chunks = iter(tts.synthesize(text, speed=speed))
        sentinel = None
        while True:
            chunk = await slot.run(next, chunks, sentinel)
            if chunk is None:
                break
            yield chunk.astype("<i2").tobytes()
