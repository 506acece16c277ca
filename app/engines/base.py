"""The engine protocols the API depends on, and the data they exchange.

Engines are synchronous where the underlying library is (STT, TTS): the API runs them in
a worker thread, never on the event loop. LLM engines are async streams.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

STT_SAMPLE_RATE = 16000

FloatAudio = npt.NDArray[np.float32]
PCM16 = npt.NDArray[np.int16]


@dataclass
class Word:
    start: float
    end: float
    word: str


@dataclass
class Segment:
    start: float
    end: float
    text: str
    # filled when word timestamps were asked for
    words: list[Word] = field(default_factory=list)


STTTask = Literal["transcribe", "translate"]


@dataclass
class Transcript:
    text: str
    language: str
    duration_s: float
    segments: list[Segment] = field(default_factory=list)


class STTEngine(Protocol):
    model_name: str
    # whisper's translate task (speech in any language -> English text) needs one
    multilingual: bool

    def transcribe(
        self,
        audio: FloatAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: STTTask = "transcribe",
        bias_names: Sequence[str] = (),
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio. `bias_names` (device and area names) make
        the decoder likelier to write those names. Streamed: `segments`."""
        ...

    def segments(
        self,
        audio: FloatAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: STTTask = "transcribe",
        bias_names: Sequence[str] = (),
    ) -> tuple[Iterator[Segment], str]:
        """The segments as they are decoded (a lazy iterator: each next() decodes), and the
        language."""
        ...


# One OpenAI-shaped chat message: role + content; for tool use an assistant message carries
# `tool_calls` and a `tool` message `tool_call_id`. Both backends take this shape as it is.
ChatMessage = dict[str, Any]
JSONSchema = dict[str, Any]


@dataclass(frozen=True)
class Tool:
    """A function the model may call (OpenAI's `{"type": "function", "function": ...}`)."""

    name: str
    description: str | None = None
    parameters: JSONSchema | None = None
    strict: bool | None = None

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = (
            self.parameters if self.parameters is not None else {"type": "object"}
        )
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ForcedTool:
    """tool_choice naming one function: the reply is a call of that function."""

    name: str


# "auto": the model decides; "none": no call; "required": at least one call.
ToolChoice = Literal["auto", "none", "required"] | ForcedTool


@dataclass(frozen=True)
class ResponseFormat:
    """Structured output: any JSON object, or JSON valid against `schema`."""

    type: Literal["json_object", "json_schema"]
    schema: JSONSchema | None = None
    name: str | None = None
    strict: bool | None = None

    def to_openai(self) -> dict[str, Any]:
        if self.type == "json_object":
            return {"type": "json_object"}
        wrapper: dict[str, Any] = {"name": self.name or "response"}
        if self.schema is not None:
            wrapper["schema"] = self.schema
        if self.strict is not None:
            wrapper["strict"] = self.strict
        return {"type": "json_schema", "json_schema": wrapper}


@dataclass
class ChatParams:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # llama-server slot to keep a conversation's KV cache warm (prompt caching); None = any.
    slot: int | None = None
    # tool use and structured output, passed to the backend (a backend that cannot honour
    # one raises UnsupportedRequestError naming it; nothing is dropped)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


@dataclass
class ToolCallDelta:
    """A piece of a streamed tool call. The first piece of call `index` carries its id and
    function name; every piece may carry the next part of the JSON arguments text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class ToolCallCollector:
    """Joins streamed ToolCallDeltas into whole calls (non-streamed answers, and protocols
    that deliver a call at once)."""

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}

    def add(self, deltas: list[ToolCallDelta]) -> None:
        for d in deltas:
            call = self._calls.setdefault(d.index, ToolCall(id="", name="", arguments=""))
            if d.id:
                call.id = d.id
            if d.name:
                call.name = d.name
            call.arguments += d.arguments

    def calls(self) -> list[ToolCall]:
        return [self._calls[i] for i in sorted(self._calls)]


@dataclass
class LLMChunk:
    """A text delta and/or tool-call deltas; the last chunk of a stream has finish_reason
    ("stop", "length", "tool_calls") and token counts."""

    text: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # of prompt_tokens, those found in the slot's KV cache (llama-server's cache_n); the
    # rest were evaluated for this request
    cached_tokens: int = 0


@dataclass
class Prefilled:
    """A prompt evaluated into a slot's KV cache without generating (LLMEngine.prefill):
    `evaluated` of its `prompt_tokens` were computed, the rest were cached already."""

    prompt_tokens: int
    evaluated: int
    ms: float


class UnsupportedRequestError(Exception):
    """The backend cannot honour a request field (named by `param`)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class RequestRejectedError(Exception):
    """The backend refused the request as invalid (e.g. a tool schema llama-server cannot
    turn into a grammar): the client's error, not the backend's."""


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

    async def close_connections(self) -> None:
        """Close the connections to the backend opened on this event loop; the engine stays
        usable (a service that was lent the engine calls this when its loop ends)."""
        ...

    async def ready(self) -> bool:
        """True when the backend can answer a request now."""
        ...

    def stream(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[LLMChunk, None]:
        """Stream the reply (text and tool-call deltas); closing the iterator early stops
        generation. Raises UnsupportedRequestError before generating when `params` asks for
        what the backend cannot do."""
        ...

    async def prefill(self, messages: list[ChatMessage], params: ChatParams) -> Prefilled | None:
        """Evaluate the prompt `stream(messages, params)` would send into `params.slot`'s
        cache, generating nothing, so that a later request sharing its prefix evaluates only
        the rest. None: the backend keeps no per-slot cache to fill (the embedded one)."""
        ...


class TTSEngine(Protocol):
    model_name: str
    voice_name: str
    sample_rate: int

    def synthesize(self, text: str, *, speed: float = 1.0) -> Iterator[PCM16]:
        """Yield mono int16 PCM, one chunk per sentence."""
        ...
