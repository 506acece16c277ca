"""POST /v1/voice: one turn, speech in -> speech out, with per-stage timings.

Answer (response_format=wav, the default): the reply as WAV; the transcript, the reply text
and the timings in headers — `X-Transcript` and `X-Reply-Text` (percent-encoded UTF-8),
`X-Timings` (JSON, milliseconds) and the standard `Server-Timing`.
response_format=json: {"transcript", "reply", "timings", "sample_rate", "audio_base64"}.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from app.api.openai_fields import refuse_unknown_form_fields
from app.audio import wav_bytes
from app.auth import check_api_key
from app.engines.base import ChatParams
from app.errors import APIError
from app.pipeline import complete, read_audio_upload, resolve_max_tokens, synthesize, transcribe
from app.state import State

router = APIRouter(dependencies=[Depends(check_api_key)])


async def _voice_fields(request: Request) -> None:
    await refuse_unknown_form_fields(
        request, ("file", "response_format", "max_tokens", "temperature", "language")
    )


@router.post("/v1/voice", response_model=None, dependencies=[Depends(_voice_fields)])
async def voice_turn(
    state: State,
    file: Annotated[UploadFile, File()],
    response_format: Annotated[Literal["wav", "json"], Form()] = "wav",
    max_tokens: Annotated[int | None, Form(ge=1)] = None,
    temperature: Annotated[float, Form(ge=0.0, le=2.0)] = 0.7,
    language: Annotated[str | None, Form(max_length=8)] = None,
) -> Response | dict[str, Any]:
    t0 = time.perf_counter()
    state.require_stt()  # refuse before reading the upload when either engine is disabled
    state.require_tts()
    llm_settings = state.settings.llm
    max_tokens = resolve_max_tokens(state, max_tokens)
    audio = await read_audio_upload(state, file)
    transcript, stt_s = await transcribe(state, audio, language=language)
    if not transcript.text:
        raise APIError(400, "no speech recognised in the audio", code="no_speech", param="file")
    messages = [
        {"role": "system", "content": llm_settings.system_prompt},
        {"role": "user", "content": transcript.text},
    ]
    reply, llm = await complete(
        state, messages, ChatParams(max_tokens=max_tokens, temperature=temperature)
    )
    pcm, tts_s = await synthesize(state, reply or "Sorry, I have no answer.")
    total_s = time.perf_counter() - t0
    state.metrics.stage_seconds.labels("voice_total").observe(total_s)
    timings = {
        "stt_ms": round(stt_s * 1000, 1),
        "llm_ttft_ms": round(llm.ttft_s * 1000, 1),
        "llm_total_ms": round(llm.total_s * 1000, 1),
        "tts_ms": round(tts_s * 1000, 1),
        "total_ms": round(total_s * 1000, 1),
        "completion_tokens": llm.completion_tokens,
    }
    sample_rate = state.require_tts().sample_rate
    wav = wav_bytes(pcm, sample_rate)
    if response_format == "json":
        return {
            "transcript": transcript.text,
            "reply": reply,
            "timings": timings,
            "sample_rate": sample_rate,
            "audio_base64": base64.b64encode(wav).decode(),
        }
    server_timing = ", ".join(
        f"{k.removesuffix('_ms')};dur={v}" for k, v in timings.items() if k.endswith("_ms")
    )
    return Response(
        wav,
        media_type="audio/wav",
        headers={
            "X-Transcript": quote(transcript.text),
            "X-Reply-Text": quote(reply),
            "X-Timings": json.dumps(timings, separators=(",", ":")),
            "Server-Timing": server_timing,
        },
    )
