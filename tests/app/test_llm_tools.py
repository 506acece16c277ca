"""Tool calls and structured output at the LLM engine layer (the one implementation the chat
route, Ollama's /api/chat and realtime function calling share): the real llama-server and
the real embedded llama-cpp-python, the tiny SmolLM2 model. The model may not choose a tool
by itself, so calls are forced (a named function, or "required"): the backend's grammar then
yields a call whose JSON arguments parse. Shapes are asserted, never the model's text."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import jsonschema
import pytest

from app.engines.base import (
    ChatMessage,
    ChatParams,
    ForcedTool,
    LLMChunk,
    LLMEngine,
    ResponseFormat,
    Tool,
    ToolCallCollector,
    UnsupportedRequestError,
)
from app.engines.forced_tool import ForcedCall
from app.engines.llm_server import LlamaServerLLM, tool_fields
from tests.app.conftest import Service, make_settings
from tests.conftest import LlamaServer, ModelPaths

WEATHER = Tool(
    name="get_weather",
    description="The weather forecast for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
TIME = Tool(
    name="get_time",
    description="The local time in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK: list[ChatMessage] = [{"role": "user", "content": "What is the weather in Paris?"}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server_llm(model_paths: ModelPaths, llama_server: LlamaServer) -> LlamaServerLLM:
    return LlamaServerLLM(make_settings(model_paths, "server", llama_server).llm)


@pytest.fixture(params=["server", "embedded"])
def llm(request: pytest.FixtureRequest, server_llm: LlamaServerLLM) -> LLMEngine:
    if request.param == "server":
        return server_llm
    svc: Service = request.getfixturevalue("embedded_service")
    return svc.state.require_engines().llm


async def _run(
    llm: LLMEngine, messages: list[ChatMessage], params: ChatParams
) -> tuple[list[LLMChunk], str]:
    try:
        async with aclosing(llm.stream(messages, params)) as stream:
            chunks = [c async for c in stream]
    finally:  # each test has its own event loop, and the client's connections belong to it
        await llm.close_connections()
    return chunks, "".join(c.text for c in chunks)


def _assert_one_call(chunks: list[LLMChunk], names: set[str]) -> dict[str, Any]:
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas, "no tool-call deltas streamed"
    first = deltas[0]
    assert first.name in names and first.id  # id and name come on a call's first piece
    assert all(d.name is None for d in deltas[1:] if d.index == first.index)
    collector = ToolCallCollector()
    for c in chunks:
        collector.add(c.tool_calls)
    calls = collector.calls()
    assert calls and calls[0].name in names and calls[0].id
    arguments = json.loads(calls[0].arguments)
    assert isinstance(arguments, dict)
    assert chunks[-1].finish_reason == "tool_calls"
    return arguments


async def test_a_named_tool_choice_streams_that_functions_call(llm: LLMEngine) -> None:
    params = ChatParams(
        max_tokens=48, temperature=0.0, tools=[WEATHER, TIME], tool_choice=ForcedTool(WEATHER.name)
    )
    chunks, _ = await _run(llm, ASK, params)
    arguments = _assert_one_call(chunks, {WEATHER.name})
    jsonschema.validate(arguments, WEATHER.parameters or {})


async def test_required_tool_choice_calls_one_of_the_tools(llm: LLMEngine) -> None:
    params = ChatParams(
        max_tokens=48, temperature=0.0, tools=[WEATHER, TIME], tool_choice="required"
    )
    chunks, _ = await _run(llm, ASK, params)
    _assert_one_call(chunks, {WEATHER.name, TIME.name})


async def test_a_tool_result_follow_up_is_answered_in_text(llm: LLMEngine) -> None:
    messages: list[ChatMessage] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": WEATHER.name, "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"forecast": "sunny, 24 C"}'},
    ]
    params = ChatParams(max_tokens=24, temperature=0.0, tools=[WEATHER], tool_choice="none")
    chunks, text = await _run(llm, messages, params)
    assert text.strip()
    assert not any(c.tool_calls for c in chunks)
    assert chunks[-1].prompt_tokens > 0 and chunks[-1].completion_tokens > 0


async def test_json_schema_output_validates(llm: LLMEngine) -> None:
    fmt = ResponseFormat("json_schema", schema=PERSON, name="person", strict=True)
    messages: list[ChatMessage] = [
        {"role": "user", "content": "Invent a person. Reply in JSON with a name and an age."}
    ]
    _, text = await _run(
        llm, messages, ChatParams(max_tokens=48, temperature=0.0, response_format=fmt)
    )
    jsonschema.validate(json.loads(text), PERSON)


async def test_embedded_refuses_auto_tool_choice_naming_the_backend(
    embedded_service: Service,
) -> None:
    llm = embedded_service.state.require_engines().llm
    with pytest.raises(UnsupportedRequestError) as err:
        await _run(llm, ASK, ChatParams(max_tokens=8, tools=[WEATHER], tool_choice="auto"))
    assert err.value.param == "tool_choice" and "embedded" in str(err.value)


async def test_a_forced_call_cannot_also_have_a_response_format(llm: LLMEngine) -> None:
    params = ChatParams(
        max_tokens=8, tools=[WEATHER], tool_choice="required",
        response_format=ResponseFormat("json_object"),
    )  # fmt: skip
    with pytest.raises(UnsupportedRequestError) as err:
        await _run(llm, ASK, params)
    assert err.value.param == "response_format"


async def test_auto_tool_choice_reaches_llama_server(server_llm: LlamaServerLLM) -> None:
    """The model decides: a reply comes (SmolLM2's template has no tool format, so text)."""
    params = ChatParams(max_tokens=12, temperature=0.0, tools=[WEATHER], tool_choice="auto")
    chunks, text = await _run(server_llm, ASK, params)
    assert text.strip() or any(c.tool_calls for c in chunks)


def test_llama_server_gets_a_forced_call_as_tools_plus_a_grammar() -> None:
    named = ChatParams(max_tokens=8, tools=[WEATHER, TIME], tool_choice=ForcedTool("get_time"))
    fields = tool_fields(named, ForcedCall(named))
    assert [t["function"]["name"] for t in fields["tools"]] == ["get_time"]
    assert fields["response_format"]["json_schema"]["schema"] == TIME.parameters
    assert "tool_choice" not in fields
    auto = ChatParams(max_tokens=8, tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False)
    assert tool_fields(auto, None) == {
        "tools": [WEATHER.to_openai()], "tool_choice": "auto", "parallel_tool_calls": False,
    }  # fmt: skip
    assert tool_fields(ChatParams(max_tokens=8), None) == {}
    # json_object goes as OpenAI spells it (llama-server: any JSON object, by grammar)
    as_json = ChatParams(max_tokens=8, response_format=ResponseFormat("json_object"))
    assert tool_fields(as_json, None) == {"response_format": {"type": "json_object"}}
