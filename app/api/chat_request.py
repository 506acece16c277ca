"""The /v1/chat/completions request as OpenAI defines it, and its translation into the LLM
engine's messages and ChatParams (tools, tool_choice, response_format included)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from app.api.openai_fields import OpenAIRequest, StrictModel
from app.engines.base import (
    ChatMessage,
    ChatParams,
    ForcedTool,
    ResponseFormat,
    Tool,
    ToolChoice,
)
from app.errors import APIError
from app.pipeline import resolve_max_tokens
from app.state import ServiceState


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class FunctionCall(StrictModel):
    name: str
    arguments: str


class ToolCallMessage(StrictModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    # assistant: the calls it made; tool: which call this message answers
    tool_calls: list[ToolCallMessage] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Message:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.tool_call_id is None) != (self.role != "tool"):
            raise ValueError("a tool message (and only a tool message) carries tool_call_id")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content is required (an assistant message may have tool_calls)")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def to_engine(self) -> ChatMessage:
        # developer is OpenAI's newer name for the system role
        out: ChatMessage = {"role": "system" if self.role == "developer" else self.role}
        out["content"] = self.text() if self.content is not None else None
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class FunctionSpec(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(StrictModel):
    type: Literal["function"]
    function: FunctionSpec

    def to_engine(self) -> Tool:
        f = self.function
        return Tool(f.name, f.description, f.parameters, f.strict)


class FunctionName(StrictModel):
    name: str


class NamedToolChoice(StrictModel):
    type: Literal["function"]
    function: FunctionName


class JSONSchemaFormat(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatSpec(StrictModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormatSpec:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema goes with type 'json_schema' (and only with it)")
        return self

    def to_engine(self) -> ResponseFormat | None:
        if self.type == "text":
            return None
        if self.json_schema is None:
            return ResponseFormat("json_object")
        s = self.json_schema
        return ResponseFormat("json_schema", s.schema_, s.name, s.strict)


class StreamOptions(StrictModel):
    include_usage: bool = False


class ChatRequest(OpenAIRequest):
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    tools: list[ToolSpec] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatSpec | None = None


def _tool_choice(req: ChatRequest, tools: list[Tool]) -> ToolChoice:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    if not tools and choice != "none":
        raise APIError(
            400, "tool_choice needs tools to choose from", code="invalid_request",
            param="tool_choice",
        )  # fmt: skip
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in {t.name for t in tools}:
            raise APIError(
                400, f"tool_choice names {choice.function.name!r}, which is not in tools",
                code="invalid_request", param="tool_choice",
            )  # fmt: skip
        return ForcedTool(choice.function.name)
    return choice


def to_params(state: ServiceState, req: ChatRequest) -> tuple[list[ChatMessage], ChatParams]:
    max_tokens = resolve_max_tokens(state, req.max_completion_tokens or req.max_tokens)
    messages = [m.to_engine() for m in req.messages]
    chars = sum(len(m.text()) for m in req.messages)
    if chars > state.settings.limits.max_input_chars:
        raise APIError(
            400,
            f"messages hold {chars} characters; "
            f"the limit is {state.settings.limits.max_input_chars}",
            code="input_too_long",
            param="messages",
        )
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4:
        raise APIError(400, "at most 4 stop sequences", code="invalid_stop", param="stop")
    tools = [t.to_engine() for t in req.tools or []]
    if len({t.name for t in tools}) != len(tools):
        raise APIError(400, "tool names must be unique", code="invalid_request", param="tools")
    params = ChatParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=stop,
        seed=req.seed,
        tools=tools,
        tool_choice=_tool_choice(req, tools),
        parallel_tool_calls=req.parallel_tool_calls,
        response_format=req.response_format.to_engine() if req.response_format else None,
    )
    return messages, params
