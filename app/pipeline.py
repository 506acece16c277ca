"""The stages every API surface shares: STT, LLM streaming, TTS — gated, timed, mapped to
clear errors. Blocking inference runs in worker threads, never on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import numpy as np
from fastapi import UploadFile

from app.audio import AudioLimits, decode_upload
from app.engines.base import (
    PCM16,
    STT_SAMPLE_RATE,
    BackendUnavailableError,
    ChatMessage,
    ChatParams,
    ContextOverflowError,
    FloatAudio,
    LLMChunk,
    Prefilled,
    RequestRejectedError,
    Segment,
    STTTask,
    ToolCall,
    ToolCallCollector,
    Transcript,
    TTSEngine,
    UnsupportedRequestError,
)
from app.errors import APIError
from app.state import ServiceState


def audio_limits(state: ServiceState) -> AudioLimits:
    lim = state.settings.limits
    return AudioLimits(lim.max_audio_seconds, lim.min_sample_rate, lim.max_sample_rate)


def resolve_max_tokens(state: ServiceState, requested: int | None) -> int:
    """The request's max_tokens (or the default); over the unit's cap is a clear 400."""
    llm = state.settings.llm
    max_tokens = requested or llm.default_max_tokens
    if max_tokens > llm.max_tokens_cap:
        raise APIError(
            400,
            f"max_tokens={max_tokens} is over this unit's cap of {llm.max_tokens_cap}",
            code="max_tokens_too_large",
            param="max_tokens",
        )
    return max_tokens


async def read_audio_upload(state: ServiceState, file: UploadFile) -> FloatAudio:
    """Read an uploaded file (bounded) and decode it for the STT engine."""
    return await decode_audio_upload(
        state, await file.read(state.settings.limits.max_upload_bytes + 1)
    )


async def decode_audio_upload(state: ServiceState, data: bytes) -> FloatAudio:
    if len(data) > state.settings.limits.max_upload_bytes:
        raise APIError(
            413,
            f"upload is {len(data)} bytes; the limit is {state.settings.limits.max_upload_bytes}",
            code="upload_too_large",
            param="file",
        )
    return await asyncio.to_thread(decode_upload, data, audio_limits(state))


def bias_names(state: ServiceState, requested: Sequence[str] = ()) -> list[str]:
    """stt.bias_names and a request's own names, each once, in that order; over
    stt.max_bias_chars together is a clear 400 (whisper's context window is small)."""
    names: list[str] = []
    for name in [*state.settings.stt.bias_names, *requested]:
        name = " ".join(name.split())
        if name and name.casefold() not in {n.casefold() for n in names}:
            names.append(name)
    chars = sum(len(n) + 2 for n in names)
    limit = state.settings.stt.max_bias_chars
    if chars > limit:
        raise APIError(
            400,
            f"the names to bias the transcription with are {chars} characters "
            f"(stt.bias_names and the request's); the limit is {limit} (stt.max_bias_chars)",
            code="too_many_names",
        )
    return names


async def transcribe(
    state: ServiceState,
    audio: FloatAudio,
    *,
    language: str | None = None,
    prompt: str | None = None,
    temperature: float = 0.0,
    names: Sequence[str] = (),
    word_timestamps: bool = False,
    task: STTTask = "transcribe",
) -> tuple[Transcript, float]:
    """Transcribe, biased towards stt.bias_names and `names`; returns the transcript and the
    seconds spent (queueing excluded)."""
    stt = state.require_stt()
    biased = bias_names(state, names)
    async with state.stt_gate.slot() as slot:
        start = time.perf_counter()
        result = await slot.run(
            stt.transcribe,
            audio,
            language=language,
            prompt=prompt,
            temperature=temperature,
            word_timestamps=word_timestamps,
            task=task,
            bias_names=biased,
        )
        elapsed = time.perf_counter() - start
    state.metrics.stage_seconds.labels("stt").observe(elapsed)
    return result, elapsed


async def transcribe_stream(
    state: ServiceState,
    audio: FloatAudio,
    *,
    language: str | None = None,
    prompt: str | None = None,
    temperature: float = 0.0,
    names: Sequence[str] = (),
    task: STTTask = "transcribe",
    into: Transcript | None = None,
) -> AsyncGenerator[Segment, None]:
    """The segments one by one as whisper decodes them, inside the STT gate, biased like
    `transcribe`: the one streaming path (HTTP's stream=true, Wyoming's transcript-chunk).
    `into`, when given, is filled as it goes: the language at once, every segment, and the
    whole text and the duration once the last segment is out."""
    stt = state.require_stt()
    biased = bias_names(state, names)
    async with state.stt_gate.slot() as slot:
        start = time.perf_counter()
        segments, detected = await slot.run(
            stt.segments, audio, language=language, prompt=prompt, temperature=temperature,
            task=task, bias_names=biased,
        )  # fmt: skip
        if into is not None:
            into.language = detected
        while (segment := await slot.run(next, segments, None)) is not None:
            if into is not None:
                into.segments.append(segment)
            yield segment
    if into is not None:
        into.text = "".join(s.text for s in into.segments).strip()
        into.duration_s = len(audio) / STT_SAMPLE_RATE
    state.metrics.stage_seconds.labels("stt").observe(time.perf_counter() - start)


@dataclass
class LLMTimings:
    ttft_s: float = 0.0
    total_s: float = 0.0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, found in the slot's cache (not evaluated)
    finish_reason: str = "stop"


def context_error(exc: ContextOverflowError, ctx_per_slot: int) -> APIError:
    detail = ""
    if exc.prompt_tokens is not None:
        detail = f" (prompt is {exc.prompt_tokens} tokens)"
    # llama-server reports the slot's real size: where it is below llm.ctx_per_slot, the
    # server runs with a smaller -c than ctx_per_slot x parallel (the field config's defect)
    n_ctx = exc.n_ctx or ctx_per_slot
    if n_ctx < ctx_per_slot:
        detail += (
            f"; llm.ctx_per_slot is {ctx_per_slot} but llama-server gives each of its slots "
            f"{n_ctx}: run it with -c ctx_per_slot x parallel"
        )
    return APIError(
        400,
        f"the conversation does not fit the per-conversation context of {n_ctx} "
        f"tokens{detail}: shorten the messages or drop old turns",
        code="context_length_exceeded",
        param="messages",
    )


async def llm_stream(
    state: ServiceState,
    messages: list[ChatMessage],
    params: ChatParams,
    timings: LLMTimings,
) -> AsyncGenerator[LLMChunk, None]:
    """Stream from the LLM inside its gate; fills `timings` (TTFT from the gate's grant)."""
    llm = state.require_engines().llm
    metrics = state.metrics
    async with state.llm_gate.slot():
        start = time.perf_counter()
        first = True
        try:
            async with aclosing(llm.stream(messages, params)) as chunks:
                async for chunk in chunks:
                    if (chunk.text or chunk.tool_calls) and first:
                        first = False
                        timings.ttft_s = time.perf_counter() - start
                        metrics.stage_seconds.labels("llm_ttft").observe(timings.ttft_s)
                    if chunk.finish_reason:
                        timings.finish_reason = chunk.finish_reason
                        timings.completion_tokens = chunk.completion_tokens
                        timings.prompt_tokens = chunk.prompt_tokens
                        timings.cached_tokens = chunk.cached_tokens
                    yield chunk
        except ContextOverflowError as exc:
            raise context_error(exc, llm.ctx_per_slot) from exc
        except UnsupportedRequestError as exc:
            raise APIError(400, str(exc), code="unsupported_by_backend", param=exc.param) from exc
        except RequestRejectedError as exc:
            raise APIError(400, str(exc), code="invalid_request") from exc
        except BackendUnavailableError as exc:
            raise APIError(503, str(exc), code="llm_unavailable", retry_after=2) from exc
        timings.total_s = time.perf_counter() - start
    metrics.stage_seconds.labels("llm_total").observe(timings.total_s)
    metrics.llm_tokens.inc(timings.completion_tokens)
    decode_s = timings.total_s - timings.ttft_s
    if timings.completion_tokens > 1 and decode_s > 0:
        metrics.llm_tokens_per_second.observe((timings.completion_tokens - 1) / decode_s)


async def llm_prefill(
    state: ServiceState, messages: list[ChatMessage], params: ChatParams
) -> Prefilled | None:
    """Evaluate a prompt into its slot's cache, generating nothing (LLMEngine.prefill), if
    the LLM gate has a place free now: a prefill is a head start, never a reason to queue.
    It holds the place while it runs. None: skipped, or the backend has nothing to fill;
    errors are the caller's to ignore or word."""
    gate = state.llm_gate
    if gate.active >= gate.concurrency or gate.waiting:
        return None
    llm = state.require_engines().llm
    async with gate.slot():
        start = time.perf_counter()
        done = await llm.prefill(messages, params)
    if done is not None:
        state.metrics.stage_seconds.labels("llm_prefill").observe(time.perf_counter() - start)
    return done


async def whole_reply(chunks: AsyncGenerator[LLMChunk, None]) -> tuple[str, list[ToolCall]]:
    """A stream's text and its tool calls joined whole (the non-streamed answers)."""
    parts: list[str] = []
    calls = ToolCallCollector()
    async with aclosing(chunks):
        async for chunk in chunks:
            parts.append(chunk.text)
            calls.add(chunk.tool_calls)
    return "".join(parts), calls.calls()


async def first_chunk(chunks: AsyncGenerator[LLMChunk, None]) -> LLMChunk:
    """The stream's first chunk, pulled before a streamed answer's 200: a context overflow or
    a busy engine is then still a proper HTTP error rather than an error inside the stream."""
    try:
        return await anext(chunks)
    except BaseException:
        await chunks.aclose()
        raise


async def complete(
    state: ServiceState, messages: list[ChatMessage], params: ChatParams
) -> tuple[str, LLMTimings]:
    timings = LLMTimings()
    text, _ = await whole_reply(llm_stream(state, messages, params, timings))
    return text, timings


async def synthesize(state: ServiceState, text: str, speed: float = 1.0) -> tuple[PCM16, float]:
    """Synthesize a whole text; returns int16 PCM and the seconds spent."""
    tts = state.require_tts()
    async with state.tts_gate.slot() as slot:
        start = time.perf_counter()
        chunks = await slot.run(_synthesize_all, tts, text, speed)
        elapsed = time.perf_counter() - start
    state.metrics.stage_seconds.labels("tts").observe(elapsed)
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return pcm.astype(np.int16, copy=False), elapsed


async def synthesize_stream(
    state: ServiceState, pieces: Sequence[str], speed: float = 1.0
) -> AsyncGenerator[PCM16, None]:
    """Synthesize text pieces (sentences) one after the other inside one TTS gate slot,
    yielding each piece's int16 PCM as soon as it is ready: the first audio waits for the first
    sentence only (piper phonemizes a whole text before it speaks any of it). Closing the
    generator early (a client gone) returns at once; the piece being synthesised in its worker
    thread is not interrupted, and the gate's place is freed when it ends (EngineGate.slot)."""
    tts = state.require_tts()
    metrics = state.metrics
    async with state.tts_gate.slot() as slot:
        start = time.perf_counter()
        first = True
        for piece in pieces:
            chunks = await slot.run(_synthesize_all, tts, piece, speed)
            for pcm in chunks:
                if first:
                    first = False
                    elapsed = time.perf_counter() - start
                    metrics.stage_seconds.labels("tts_first_audio").observe(elapsed)
                yield pcm.astype(np.int16, copy=False)
        elapsed = time.perf_counter() - start
    metrics.stage_seconds.labels("tts").observe(elapsed)


def _synthesize_all(tts: TTSEngine, text: str, speed: float) -> list[PCM16]:
    return list(tts.synthesize(text, speed=speed))
