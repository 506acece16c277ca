"""The Ollama /api/chat request as Ollama's API defines it (the fields Home Assistant's Ollama
integration and the `ollama` client send), and its translation into the LLM engine's messages
and ChatParams. What this unit does not support is refused with a 400 naming it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.engines.base import ChatParams
from app.errors import APIError
from app.pipeline import resolve_max_tokens
from app.state import ServiceState

# options a request may set, and how each maps onto ChatParams
SUPPORTED_OPTIONS = ("num_ctx", "num_predict", "temperature", "top_p", "seed", "stop")
MAX_STOP = 4


class Forbid(BaseModel):
    # a field this unit does not know is a 400 naming it, never dropped
    model_config = ConfigDict(extra="forbid")


class ChatMessage(Forbid):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    images: list[Any] | None = None
    tool_name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatRequest(Forbid):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    stream: bool = True
    think: bool | str | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ShowRequest(Forbid):
    model: str
    verbose: bool | None = None


def _unsupported(param: str, message: str) -> APIError:
    return APIError(400, f"{param}: {message}", code="unsupported_field", param=param)


def served_model(state: ServiceState, requested: str) -> str:
    """The LLM's name; Ollama clients may add the default tag (`name:latest`)."""
    name = state.settings.llm.model_name
    if requested not in (name, f"{name}:latest"):
        raise APIError(
            404, f"model {requested!r} not found; this unit serves {name!r}", param="model"
        )
    return name


def refuse_unsupported(req: ChatRequest) -> None:
    if req.think not in (None, False, ""):
        raise _unsupported("think", f"{req.think!r}: this model does not think")
    if req.format not in (None, ""):
        raise _unsupported("format", "structured output is not supported on this unit")
    if req.logprobs or req.top_logprobs:
        raise _unsupported("logprobs", "log probabilities are not returned by this unit")
    if req.tools:
        raise _unsupported("tools", "tool calls are not supported on this unit yet")
    for i, m in enumerate(req.messages):
        if m.images:
            raise _unsupported(f"messages.{i}.images", "this model reads no images")
        if m.thinking:
            raise _unsupported(f"messages.{i}.thinking", "this model does not think")
        if m.role == "tool" or m.tool_calls or m.tool_name:
            raise _unsupported(f"messages.{i}", "tool messages are not supported yet")
    unknown = sorted(set(req.options or {}) - set(SUPPORTED_OPTIONS))
    if unknown:
        raise APIError(
            400,
            f"options not supported on this unit: {', '.join(unknown)} "
            f"(supported: {', '.join(SUPPORTED_OPTIONS)})",
            code="unsupported_option",
            param=f"options.{unknown[0]}",
        )


def _option(options: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = options.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise APIError(400, f"options.{key}: {value!r} is not a number", param=f"options.{key}")
    return value


def chat_params(state: ServiceState, req: ChatRequest) -> ChatParams:
    options = req.options or {}
    _option(options, "num_ctx", int)
    num_predict = _option(options, "num_predict", int)
    # Ollama's -1 (no limit) and -2 (fill the context): the most this unit gives
    if num_predict is not None and num_predict <= 0:
        num_predict = state.settings.llm.max_tokens_cap
    temperature = _option(options, "temperature", (int, float))
    top_p = _option(options, "top_p", (int, float))
    if temperature is not None and not 0 <= temperature <= 2:
        raise APIError(400, "options.temperature: from 0 to 2", param="options.temperature")
    if top_p is not None and not 0 < top_p <= 1:
        raise APIError(400, "options.top_p: above 0, at most 1", param="options.top_p")
    stop = options.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise APIError(400, "options.stop: a list of strings", param="options.stop")
    if len(stop) > MAX_STOP:
        raise APIError(400, f"options.stop: at most {MAX_STOP}", param="options.stop")
    return ChatParams(
        max_tokens=resolve_max_tokens(state, num_predict),
        temperature=0.7 if temperature is None else float(temperature),
        top_p=0.95 if top_p is None else float(top_p),
        stop=stop,
        seed=_option(options, "seed", int),
    )


def chat_messages(state: ServiceState, req: ChatRequest) -> list[dict[str, str]]:
    messages = [{"role": m.role, "content": m.content} for m in req.messages]
    chars = sum(len(m["content"]) for m in messages)
    limit = state.settings.limits.max_input_chars
    if chars > limit:
        raise APIError(
            400,
            f"messages hold {chars} characters; the limit is {limit}",
            code="input_too_long",
            param="messages",
        )
    return messages
