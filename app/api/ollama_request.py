"""The Ollama /api/chat request as Ollama's API defines it (the fields Home Assistant's Ollama
integration and the `ollama` client send), and its translation into the LLM engine's messages
and ChatParams: tools (OpenAI's function shape, which Ollama uses too), tool calls and tool
results in the history, `format` as structured output. What this unit does not support is
refused with a 400 naming it."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.engines.base import ChatMessage, ChatParams, ResponseFormat, Tool, ToolChoice
from app.errors import APIError
from app.pipeline import resolve_max_tokens
from app.state import ServiceState

# options a request may set, and how each maps onto ChatParams
SUPPORTED_OPTIONS = ("num_ctx", "num_predict", "temperature", "top_p", "seed", "stop")
MAX_STOP = 4
MAX_TOOLS = 128


class Forbid(BaseModel):
    # a field this unit does not know is a 400 naming it, never dropped
    model_config = ConfigDict(extra="forbid")


class FunctionSpec(Forbid):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(Forbid):
    type: Literal["function"] = "function"
    function: FunctionSpec

    def to_engine(self) -> Tool:
        f = self.function
        return Tool(f.name, f.description, f.parameters)


class FunctionCall(Forbid):
    name: str
    # Ollama gives a call's arguments as a JSON object (OpenAI: as JSON text)
    arguments: dict[str, Any]


class ToolCall(Forbid):
    function: FunctionCall


class Message(Forbid):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    images: list[Any] | None = None
    # tool: the function whose result this is (optional: results answer the calls in order)
    tool_name: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatRequest(Forbid):
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolSpec] | None = Field(None, max_length=MAX_TOOLS)
    stream: bool = True
    think: bool | str | None = None
    format: Literal["", "json"] | dict[str, Any] | None = None
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
    llm = state.settings.llm
    if requested.removesuffix(":latest") != llm.model_name:
        raise APIError(
            404, f"model {requested!r} not found; this unit serves {llm.model_name!r}",
            param="model",
        )  # fmt: skip
    return llm.model_name


def refuse_unsupported(req: ChatRequest) -> None:
    if req.think not in (None, False, ""):
        raise _unsupported("think", f"{req.think!r}: this model does not think")
    if req.logprobs or req.top_logprobs:
        raise _unsupported("logprobs", "log probabilities are not returned by this unit")
    for i, m in enumerate(req.messages):
        if m.images:
            raise _unsupported(f"messages.{i}.images", "this model reads no images")
        if m.thinking:
            raise _unsupported(f"messages.{i}.thinking", "this model does not think")
        if m.tool_calls and m.role != "assistant":
            raise _unsupported(f"messages.{i}.tool_calls", "only assistant messages carry them")
        if m.tool_name and m.role != "tool":
            raise _unsupported(f"messages.{i}.tool_name", "only tool messages carry it")
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


def _tool_choice(state: ServiceState, req: ChatRequest) -> ToolChoice:
    """Ollama has no tool_choice: the model decides, unless ollama.tool_choice "required"
    makes a new user turn with tools a call (small models that never choose one); after a
    tool result the model answers freely (in words, or with another call)."""
    forced = state.settings.ollama.tool_choice == "required"
    if req.tools and forced and req.messages[-1].role == "user":
        return "required"
    return "auto"


def _response_format(req: ChatRequest) -> ResponseFormat | None:
    if req.format in (None, ""):
        return None
    if req.format == "json":
        return ResponseFormat("json_object")
    assert isinstance(req.format, dict)
    return ResponseFormat("json_schema", schema=req.format, name="response")


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
    tools = [t.to_engine() for t in req.tools or []]
    if len({t.name for t in tools}) != len(tools):
        raise APIError(400, "tools: names must be unique", param="tools")
    return ChatParams(
        max_tokens=resolve_max_tokens(state, num_predict),
        temperature=0.7 if temperature is None else float(temperature),
        top_p=0.95 if top_p is None else float(top_p),
        stop=stop,
        seed=_option(options, "seed", int),
        tools=tools,
        tool_choice=_tool_choice(state, req),
        response_format=_response_format(req),
    )


def chat_messages(state: ServiceState, req: ChatRequest) -> list[ChatMessage]:
    """Engine (OpenAI-shaped) messages. Ollama's history has no call ids: each assistant call
    gets one, and the tool results that follow answer the calls in order (by tool_name where
    given)."""
    out: list[ChatMessage] = []
    pending: list[tuple[str, str]] = []  # (id, function name) not yet answered
    for i, m in enumerate(req.messages):
        if m.role == "assistant" and m.tool_calls:
            calls = [(f"call_{i}_{k}", c.function) for k, c in enumerate(m.tool_calls)]
            pending = [(call_id, f.name) for call_id, f in calls]
            out.append({
                "role": "assistant", "content": m.content or None,
                "tool_calls": [
                    {"id": call_id, "type": "function",
                     "function": {"name": f.name, "arguments": json.dumps(f.arguments)}}
                    for call_id, f in calls
                ],
            })  # fmt: skip
        elif m.role == "tool":
            match = [p for p in pending if m.tool_name in (None, p[1])]
            if not match:
                raise APIError(
                    400, f"messages.{i}: a tool result with no assistant tool call to answer "
                    "before it", param=f"messages.{i}",
                )  # fmt: skip
            pending.remove(match[0])
            out.append({"role": "tool", "tool_call_id": match[0][0], "content": m.content})
        else:
            out.append({"role": m.role, "content": m.content})
    chars = sum(len(m.content) for m in req.messages)
    limit = state.settings.limits.max_input_chars
    if chars > limit:
        raise APIError(
            400,
            f"messages hold {chars} characters; the limit is {limit}",
            code="input_too_long",
            param="messages",
        )
    return out
