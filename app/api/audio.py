"""OpenAI-compatible speech-to-text: /v1/audio/transcriptions and /v1/audio/translations.

response_format json | text | verbose_json | srt | vtt; timestamp_granularities segment and
word (verbose_json); stream=true answers with server-sent events, one `transcript.text.delta`
per segment as whisper decodes it, then `transcript.text.done`. Translations are whisper's
translate task (speech in any language -> English text): a multilingual model only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse

from app.api import subtitles
from app.api.models import require_model
from app.api.openai_fields import refuse_unknown_form_fields
from app.auth import check_api_key
from app.engines.base import Segment, STTTask, Transcript
from app.errors import APIError
from app.pipeline import read_audio_upload, transcribe, transcribe_stream
from app.state import State

router = APIRouter(dependencies=[Depends(check_api_key)])

TranscriptFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
_TRANSCRIPTION_FIELDS = (
    "file", "model", "language", "prompt", "response_format", "temperature",
    "timestamp_granularities[]", "stream",
)  # fmt: skip
_TRANSLATION_FIELDS = ("file", "model", "prompt", "response_format", "temperature")


async def _transcription_fields(request: Request) -> None:
    await refuse_unknown_form_fields(request, _TRANSCRIPTION_FIELDS)


async def _translation_fields(request: Request) -> None:
    await refuse_unknown_form_fields(request, _TRANSLATION_FIELDS)


@router.post(
    "/v1/audio/transcriptions",
    response_model=None,
    dependencies=[Depends(_transcription_fields)],
)
async def transcriptions(
    state: State,
    file: Annotated[UploadFile, File()],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form(max_length=8)] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    timestamp_granularities: Annotated[
        list[Literal["segment", "word"]] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[bool, Form()] = False,
) -> dict[str, Any] | PlainTextResponse | StreamingResponse:
    state.require_stt()  # a disabled engine is named before the model is checked
    require_model(state, model, "stt")
    granularities = set(timestamp_granularities or ["segment"])
    if timestamp_granularities and response_format != "verbose_json":
        raise APIError(
            400, "timestamp_granularities needs response_format 'verbose_json'",
            code="invalid_request", param="timestamp_granularities",
        )  # fmt: skip
    if stream and response_format not in ("json", "text"):
        raise APIError(
            400, f"stream=true answers with transcript.text events: response_format "
            f"{response_format!r} cannot be streamed (use json or text)",
            code="invalid_request", param="stream",
        )  # fmt: skip
    audio = await read_audio_upload(state, file)
    if stream:
        segments = transcribe_stream(
            state, audio, language=language, prompt=prompt, temperature=temperature
        )
        return await _sse(segments)
    result, _ = await transcribe(
        state, audio, language=language, prompt=prompt, temperature=temperature,
        word_timestamps="word" in granularities,
    )  # fmt: skip
    return _answer(result, response_format, "transcribe", granularities)


@router.post(
    "/v1/audio/translations", response_model=None, dependencies=[Depends(_translation_fields)]
)
async def translations(
    state: State,
    file: Annotated[UploadFile, File()],
    model: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> dict[str, Any] | PlainTextResponse:
    stt = state.require_stt()
    require_model(state, model, "stt")
    if not stt.multilingual:
        raise APIError(
            400,
            f"this unit's speech model ({state.settings.stt.model_name}) is English-only: "
            "it cannot translate; transcribe English speech with /v1/audio/transcriptions, "
            "or install a multilingual whisper model to translate",
            code="translation_unsupported",
            param="model",
        )
    audio = await read_audio_upload(state, file)
    # the translate task decodes any language into English; language=None: whisper detects
    # the spoken one (stt.language is the default for transcription)
    result, _ = await transcribe(
        state, audio, language=None, prompt=prompt, temperature=temperature, task="translate"
    )
    return _answer(result, response_format, "translate", {"segment"})


def _answer(
    result: Transcript, response_format: TranscriptFormat, task: STTTask, granularities: set[str]
) -> dict[str, Any] | PlainTextResponse:
    if response_format == "text":
        return PlainTextResponse(result.text)
    if response_format == "srt":
        return PlainTextResponse(subtitles.srt(result.segments))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.vtt(result.segments), media_type="text/vtt")
    if response_format == "json":
        return {"text": result.text}
    body: dict[str, Any] = {
        "task": task,
        "language": result.language,
        "duration": result.duration_s,
        "text": result.text,
    }
    if "segment" in granularities:
        body["segments"] = [
            {"id": i, "start": s.start, "end": s.end, "text": s.text}
            for i, s in enumerate(result.segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end}
            for s in result.segments
            for w in s.words
        ]
    return body


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _sse(segments: AsyncGenerator[Segment, None]) -> StreamingResponse:
    # the first segment is decoded before answering: a busy engine is still an HTTP error
    try:
        first = await anext(segments, None)
    except BaseException:
        await segments.aclose()
        raise

    async def events() -> AsyncIterator[str]:
        parts: list[str] = []
        async with aclosing(segments):
            segment = first
            while segment is not None:
                if segment.text:
                    parts.append(segment.text)
                    yield _event({"type": "transcript.text.delta", "delta": segment.text})
                segment = await anext(segments, None)
        yield _event({"type": "transcript.text.done", "text": "".join(parts).strip()})

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
