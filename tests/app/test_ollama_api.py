"""The Ollama API with the official `ollama` client (what Home Assistant's Ollama integration
uses) against a real service and llama-server: the model list, show, streamed and one-shot
chat, Home Assistant's Assist tools (a well-formed call, then the `role: tool` follow-up),
JSON output, Ollama-shaped errors for what this unit does not support, and the auth policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import ollama
import pytest

from app.state import ServiceState
from tests.app.conftest import LLM_NAME, Service, make_settings, run_service, server_engines
from tests.conftest import API_KEY, LlamaServer, ModelPaths

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def keyless(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[Service]:
    """A unit with a key (as on a LAN) that accepts Home Assistant's keyless Ollama client."""
    settings = make_settings(
        model_paths, "server", llama_server,
        # the tiny model never chooses a tool: a new user turn with tools is made a call
        ollama={"allow_unauthenticated": True, "tool_choice": "required"},
    )  # fmt: skip
    yield from run_service(settings, server_engines(stt_tts, settings))


@pytest.fixture
def client(keyless: Service) -> ollama.Client:
    return ollama.Client(host=keyless.url, timeout=120)


def _llm_turns(state: ServiceState) -> float:
    """Replies the LLM stage finished (its histogram, shared with the OpenAI route)."""
    value = state.metrics.registry.get_sample_value(
        "voicefleet_stage_seconds_count", {"stage": "llm_total"}
    )
    return value or 0.0


def test_model_list_and_show(client: ollama.Client, keyless: Service) -> None:
    models = client.list().models
    assert [m.model for m in models] == [LLM_NAME]
    assert models[0].size and models[0].size > 0 and models[0].digest
    assert models[0].details is not None and models[0].details.format == "gguf"
    shown = client.show(f"{LLM_NAME}:latest")
    assert shown.capabilities is not None and "completion" in shown.capabilities
    family = shown.details.family if shown.details else None
    assert family and shown.modelinfo is not None
    assert shown.modelinfo[f"{family}.context_length"] == keyless.settings.llm.ctx_per_slot
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("llama3.2:3b")
    assert missing.value.status_code == 404 and LLM_NAME in missing.value.error


def test_version(keyless: Service) -> None:
    body = httpx.get(f"{keyless.url}/api/version", timeout=10).json()
    assert body["version"]


def test_streamed_chat_as_home_assistant_sends_it(client: ollama.Client, keyless: Service) -> None:
    before = _llm_turns(keyless.state)
    parts = list(
        client.chat(
            model=LLM_NAME, messages=QUESTION, stream=True, keep_alive="-1s",
            options={"num_ctx": 8192, "num_predict": 32},
        )
    )  # fmt: skip
    assert len(parts) >= 3 and all(p.message.role == "assistant" for p in parts)
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason in ("stop", "length") and last.eval_count and last.prompt_eval_count
    assert "".join(p.message.content or "" for p in parts).strip()
    assert _llm_turns(keyless.state) == before + 1


def test_one_shot_chat(client: ollama.Client) -> None:
    reply = client.chat(model=LLM_NAME, messages=QUESTION, options={"num_predict": 16})
    assert reply.done and reply.message.content and reply.message.content.strip()
    assert reply.eval_count and 0 < reply.eval_count <= 16
    assert reply.total_duration and reply.total_duration > 0


@pytest.mark.parametrize(
    ("request_fields", "named"),
    [
        ({"options": {"top_k": 40, "mirostat": 1}}, "mirostat, top_k"),
        ({"think": True}, "think"),
        ({"options": {"temperature": "hot"}}, "options.temperature"),
        ({"options": {"num_predict": 100000}}, "max_tokens"),
    ],
)
def test_unsupported_fields_are_a_400_naming_them(
    client: ollama.Client, request_fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=LLM_NAME, messages=QUESTION, **request_fields)
    assert refused.value.status_code == 400
    assert named in refused.value.error, refused.value.error


def test_unknown_request_field_is_named(keyless: Service) -> None:
    body = {"model": LLM_NAME, "messages": QUESTION, "stream": False, "suffix": "x"}
    r = httpx.post(f"{keyless.url}/api/chat", json=body, timeout=30)
    assert r.status_code == 400 and "suffix" in r.json()["error"]
    image = {"role": "user", "content": "what is this", "images": ["aGk="]}
    images = {"model": LLM_NAME, "stream": False, "messages": [image]}
    r = httpx.post(f"{keyless.url}/api/chat", json=images, timeout=30)
    assert r.status_code == 400 and "messages.0.images" in r.json()["error"]


def test_keyless_clients_need_the_acknowledgement(server_service: Service) -> None:
    """The default (ollama.allow_unauthenticated false): the service's key, as everywhere."""
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=server_service.url).list()
    assert refused.value.status_code == 401
    keyed = ollama.Client(host=server_service.url, headers={"Authorization": f"Bearer {API_KEY}"})
    assert [m.model for m in keyed.list().models] == [LLM_NAME]


# Home Assistant's Assist tools as its Ollama integration sends them (voluptuous -> OpenAPI)
HASS_TURN_ON = {
    "type": "function",
    "function": {
        "name": "HassTurnOn",
        "description": "Turns on/opens/presses a device or entity.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "area": {"type": "string"},
                "domain": {"type": "array", "items": {"type": "string", "enum": ["light"]}},
            },
            "required": [],
        },
    },
}
HASS_TURN_OFF = json.loads(json.dumps(HASS_TURN_ON).replace("HassTurnOn", "HassTurnOff"))
TOOLS = [HASS_TURN_ON, HASS_TURN_OFF]
COMMAND = [
    {"role": "system", "content": "You control the home with the tools."},
    {"role": "user", "content": "Turn on the kitchen lights."},
]


def _check_call(call: ollama.Message.ToolCall) -> None:
    assert call.function.name in ("HassTurnOn", "HassTurnOff")
    parameters = HASS_TURN_ON["function"]["parameters"]  # type: ignore[index]
    jsonschema.validate(dict(call.function.arguments), parameters)


def test_home_assistant_tools_give_a_well_formed_call(client: ollama.Client) -> None:
    reply = client.chat(model=LLM_NAME, messages=COMMAND, tools=TOOLS, stream=False,
                        options={"num_predict": 48, "temperature": 0})  # fmt: skip
    calls = reply.message.tool_calls
    assert calls and reply.done and reply.done_reason == "stop"
    for call in calls:
        _check_call(call)


def test_streamed_tool_call_then_the_tool_result_follow_up(client: ollama.Client) -> None:
    """Home Assistant's loop: stream, collect the calls, run them, send the results back as
    `role: tool` messages with the assistant's calls before them; the model answers."""
    parts = list(client.chat(model=LLM_NAME, messages=COMMAND, tools=TOOLS, stream=True,
                             options={"num_predict": 48, "temperature": 0}))  # fmt: skip
    assert parts[-1].done
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert calls, [p.message for p in parts]
    for call in calls:
        _check_call(call)
    history = [
        *COMMAND,
        ollama.Message(role="assistant", content="", tool_calls=calls),
        *[
            {"role": "tool", "content": json.dumps({"success": True, "targets": ["light.kitchen"]})}
            for _ in calls
        ],
    ]
    answer = client.chat(model=LLM_NAME, messages=history, tools=TOOLS, stream=False,
                         options={"num_predict": 24, "temperature": 0})  # fmt: skip
    assert answer.done
    # after a tool result the model decides (llama-server, auto): words, or another call
    assert (answer.message.content or "").strip() or answer.message.tool_calls
    for call in answer.message.tool_calls or []:
        _check_call(call)


def test_a_tool_result_without_a_call_is_refused(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=LLM_NAME, messages=[*COMMAND, {"role": "tool", "content": "{}"}])
    assert refused.value.status_code == 400 and "messages.2" in refused.value.error


def test_json_format(client: ollama.Client) -> None:
    reply = client.chat(model=LLM_NAME, format="json", stream=False,
                        messages=[{"role": "user", "content": "A colour, as JSON."}],
                        options={"num_predict": 32, "temperature": 0})  # fmt: skip
    assert isinstance(json.loads(reply.message.content or ""), dict)


def test_the_api_can_be_switched_off(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> None:
    settings = make_settings(model_paths, "server", llama_server, ollama={"enabled": False})
    service = run_service(settings, server_engines(stt_tts, settings))
    svc = next(service)
    try:
        r = httpx.get(f"{svc.url}/api/tags", headers=svc.headers, timeout=10)
        assert r.status_code == 404 and "ollama.enabled: false" in r.json()["error"]
        assert httpx.get(f"{svc.url}/v1/models", headers=svc.headers, timeout=10).is_success
    finally:
        service.close()
