"""The engine protocols the API depends on, and the data they exchange.

Engines are synchronous where the underlying library is (STT, TTS): the API runs them in
a worker thread, never on the event loop. LLM engines are async streams.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

STT_SAMPLE_RATE = 16000

FloatAudio = npt.NDArray[np.float32]
PCM16 = npt.NDArray[np.int16]


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    language: str
    duration_s: float
    segments: list[Segment] = field(default_factory=list)


class STTEngine(Protocol):
    model_name: str

    def transcribe(
        self,
        audio: FloatAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        bias_names: Sequence[str] = (),
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio. `bias_names` (device and area names) make
        the decoder likelier to write those names; `on_segment` is called (in the calling
        thread) with each segment as soon as it is decoded, before the whole is done."""
        ...


@dataclass
class ChatParams:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # llama-server slot to keep a conversation's KV cache warm (prompt caching); None = any.
    slot: int | None = None


@dataclass
class LLMChunk:
    """A text delta; the last chunk of a stream has finish_reason and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ContextOverflowError(Exception):
    """The prompt does not fit the per-conversation context (ctx_per_slot)."""

    def __init__(self, message: str, prompt_tokens: int | None = None, n_ctx: int | None = None):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class BackendUnavailableError(Exception):
    """The LLM backend cannot serve now (loading, down, timed out)."""


class LLMEngine(Protocol):
    model_name: str
    ctx_per_slot: int

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def ready(self) -> bool:
        """True when the backend can answer a request now."""
        ...

    def stream(
        self, messages: list[dict[str, str]], params: ChatParams
    ) -> AsyncGenerator[LLMChunk, None]:
        """Stream the reply; closing the iterator early stops generation."""
        ...


class TTSEngine(Protocol):
    model_name: str
    voice_name: str
    sample_rate: int

    def synthesize(self, text: str, *, speed: float = 1.0) -> Iterator[PCM16]:
        """Yield mono int16 PCM, one chunk per sentence."""
        ...
