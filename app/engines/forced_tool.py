"""A tool call the reply must be (tool_choice "required", or naming a function), made by a
JSON-schema grammar: the one way both backends honour it whatever the chat template.

Why not the backends' own handling: llama-server reads tool_choice as a string only (an
object naming a function falls back to "auto"), and its "required" constrains the reply only
where the template's tool-call format was recognised (SmolLM2's was not; with Llama 3.2's it
let text come before the call); llama-cpp-python forces only a named function. A grammar
over the function's parameters (or over {"name", "arguments"} for any of the tools) makes the
reply a call that parses, on both backends.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from app.engines.base import (
    ChatParams,
    ForcedTool,
    JSONSchema,
    LLMChunk,
    ToolCallDelta,
    UnsupportedRequestError,
)

_ANY_OBJECT: JSONSchema = {"type": "object"}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ForcedCall:
    """The grammar's schema for a forced call, and the reply's text turned into deltas.

    A named function: the reply is its arguments, streamed as they come. "required": the
    reply is {"name": ..., "arguments": {...}} for one of the tools, delivered as one call
    once complete (the name is known only when the JSON is)."""

    def __init__(self, params: ChatParams) -> None:
        if params.response_format is not None:
            raise UnsupportedRequestError(
                "response_format with a forced tool call (tool_choice 'required' or naming a "
                "function): the reply is the call's JSON, it cannot also be another format",
                param="response_format",
            )
        choice = params.tool_choice
        self._id = new_call_id()
        self._sent_head = False
        self._buffer: list[str] = []
        self.made_call = False
        self.name: str | None = None
        if isinstance(choice, ForcedTool):
            tool = next(t for t in params.tools if t.name == choice.name)
            self.name = tool.name
            self.schema: JSONSchema = tool.parameters or _ANY_OBJECT
            self.tools = [tool]
        else:
            self.tools = list(params.tools)
            self.schema = {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "name": {"const": t.name},
                            "arguments": t.parameters or _ANY_OBJECT,
                        },
                        "required": ["name", "arguments"],
                    }
                    for t in self.tools
                ]
            }

    @staticmethod
    def wanted(params: ChatParams) -> bool:
        return bool(params.tools) and (
            isinstance(params.tool_choice, ForcedTool) or params.tool_choice == "required"
        )

    def feed(self, text: str) -> list[ToolCallDelta]:
        if self.name is None:
            self._buffer.append(text)
            return []
        delta = ToolCallDelta(index=0, arguments=text)
        if not self._sent_head:
            self._sent_head = True
            delta.id, delta.name = self._id, self.name
        return [delta]

    def finish(self) -> LLMChunk | None:
        """What is still due at the end: a named call that streamed nothing still gets its
        head; a "required" reply becomes its call, or, when it is not one (cut short by
        max_tokens), it comes back as text rather than being dropped."""
        if self.name is not None:
            self.made_call = True
            if self._sent_head:
                return None
            return LLMChunk(tool_calls=[ToolCallDelta(index=0, id=self._id, name=self.name)])
        text = "".join(self._buffer)
        try:
            call: Any = json.loads(text)
            name, arguments = call["name"], call["arguments"]
        except (ValueError, KeyError, TypeError):
            return LLMChunk(text=text) if text else None
        self.made_call = True
        delta = ToolCallDelta(index=0, id=self._id, name=name, arguments=json.dumps(arguments))
        return LLMChunk(tool_calls=[delta])

    def finish_reason(self, backend_reason: str | None) -> str:
        """OpenAI's "tool_calls" for a reply that ended as a call ("length" stays)."""
        if self.made_call and backend_reason in (None, "stop"):
            return "tool_calls"
        return backend_reason or "stop"
