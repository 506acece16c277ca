"""OpenAI's documented calls, unmodified, through the official `openai` SDK against the real
service (real whisper, piper, llama-server and llama-cpp-python): the model names OpenAI's
examples use, every response format, streaming, tools, structured output, and the errors a
client must actually receive. Shapes and numbers are asserted, never the LLM's text."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import av
import jsonschema
import openai
import pytest

from tests.app.conftest import LLM_NAME, Service
from tests.conftest import API_KEY

pytestmark = pytest.mark.slow

THREE_SENTENCES = "The first sentence is short. The second one follows it. And a third."
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _client(svc: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{svc.url}/v1", api_key=API_KEY, max_retries=0)


def _check_subtitles(text: str, fmt: str) -> None:
    """An srt or vtt answer starts as the format does and has a cue timing line."""
    if fmt == "srt":
        assert text.startswith("1\n00:00:0") and " --> " in text
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n00:00:0") and " --> " in text


def _seconds(audio: bytes) -> float:
    """Decode with PyAV (ffmpeg) and count the samples: the file is what a player plays."""
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return float(samples / stream.rate)


# --- transcription -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text", "verbose_json", "srt", "vtt"])
def test_transcription_in_every_format(
    server_service: Service, speech_wav: bytes, fmt: str
) -> None:
    result: Any = _client(server_service).audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech_wav), response_format=fmt
    )
    text = result if isinstance(result, str) else result.text
    assert "weather" in text.lower(), text
    _check_subtitles(text, fmt)
    if fmt == "verbose_json":
        assert result.task == "transcribe" and result.language == "en"
        assert 1.0 < result.duration < 10.0
        assert result.segments and result.segments[0].end > result.segments[0].start


def test_transcription_word_timestamps(server_service: Service, speech_wav: bytes) -> None:
    result = _client(server_service).audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=("speech.wav", speech_wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    words = result.words or []
    assert any("weather" in w.word.lower() for w in words)
    assert all(w.end >= w.start for w in words)
    starts = [w.start for w in words]
    assert starts == sorted(starts) and starts[-1] < result.duration
    assert result.segments


def test_transcription_streams_text_events(server_service: Service, speech_wav: bytes) -> None:
    stream = _client(server_service).audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=("speech.wav", speech_wav), stream=True
    )
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1 and events[-1] is done[0]
    assert "weather" in done[0].text.lower()
    assert "".join(deltas).strip() == done[0].text


def _recording(wav: bytes, rate: int, layout: str, codec: str) -> bytes:
    """The utterance re-recorded by ffmpeg (PyAV): another rate, channel layout, encoding."""
    out = io.BytesIO()
    with av.open(io.BytesIO(wav)) as src, av.open(out, "w", format="wav") as dst:
        stream = dst.add_stream(codec, rate=rate, layout=layout)
        for frame in src.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(
    ("rate", "layout", "codec"),
    [
        (44100, "stereo", "pcm_s16le"),
        (96000, "stereo", "pcm_s24le"),
        (48000, "5.1", "pcm_s16le"),
        (8000, "mono", "pcm_u8"),
    ],
)
def test_any_rate_and_channel_count_is_transcribed(
    server_service: Service, speech_wav: bytes, rate: int, layout: str, codec: str
) -> None:
    recording = _recording(speech_wav, rate, layout, codec)
    text = _client(server_service).audio.transcriptions.create(
        model="whisper-1", file=("recording.wav", recording), response_format="text"
    )
    assert "weather" in text.lower(), text


def test_translation_with_an_english_only_model_says_so(
    server_service: Service, speech_wav: bytes
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(server_service).audio.translations.create(
            model="whisper-1", file=("speech.wav", speech_wav)
        )
    assert err.value.code == "translation_unsupported"
    assert "English-only" in err.value.message


# --- speech --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_seconds(server_service: Service) -> float:
    pcm = _client(server_service).audio.speech.create(
        model="tts-1", voice="alloy", input=THREE_SENTENCES, response_format="pcm"
    )
    return len(pcm.content) / 2 / 22050


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_speech_in_every_format_decodes_to_the_whole_text(
    server_service: Service, reference_seconds: float, fmt: str
) -> None:
    with _client(server_service).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=THREE_SENTENCES, response_format=fmt
    ) as response:
        chunks = [c for c in response.iter_bytes() if c]
    assert len(chunks) >= 2  # streamed as the sentences were spoken, not in one piece
    seconds = _seconds(b"".join(chunks))
    # encoders pad a frame or two; nothing of the speech is lost
    assert abs(seconds - reference_seconds) < 0.1 * reference_seconds, (seconds, reference_seconds)


def test_speech_defaults_to_mp3_and_takes_speed_and_instructions(
    server_service: Service, reference_seconds: float
) -> None:
    client = _client(server_service)
    audio = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="coral", input=THREE_SENTENCES,
        instructions="Speak in a cheerful and positive tone.", speed=1.5,
    ).content  # fmt: skip
    with av.open(io.BytesIO(audio)) as container:
        assert container.format.name == "mp3"
    assert _seconds(audio) < 0.85 * reference_seconds  # faster speech is shorter


def test_speech_as_server_sent_events(server_service: Service, reference_seconds: float) -> None:
    with _client(server_service).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=THREE_SENTENCES, response_format="mp3",
        stream_format="sse",
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
        ]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert abs(_seconds(audio) - reference_seconds) < 0.1 * reference_seconds


# --- chat: tools, structured output -------------------------------------------------------

ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
FORCE_WEATHER: Any = {"type": "function", "function": {"name": "get_weather"}}


def test_chat_tool_call_named_by_tool_choice(service: Service) -> None:
    reply = _client(service).chat.completions.create(
        model=LLM_NAME, messages=ASK, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER,
        max_tokens=40, temperature=0,
    )  # fmt: skip
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(
        json.loads(calls[0].function.arguments), WEATHER_TOOL["function"]["parameters"]
    )  # type: ignore[union-attr]


def test_chat_tool_call_streams_in_openai_shape(service: Service) -> None:
    stream = _client(service).chat.completions.create(
        model=LLM_NAME, messages=ASK, tools=[WEATHER_TOOL], tool_choice="required",
        max_tokens=40, temperature=0, stream=True,
    )  # fmt: skip
    deltas = [d for c in stream if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    arguments = "".join((d.function.arguments or "") for d in deltas if d.function)
    assert isinstance(json.loads(arguments), dict)


def test_chat_tool_result_follow_up(service: Service) -> None:
    first = _client(service).chat.completions.create(
        model=LLM_NAME, messages=ASK, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER,
        max_tokens=40, temperature=0,
    )  # fmt: skip
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: Any = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny, 24 C"}'},
    ]
    reply = _client(service).chat.completions.create(
        model=LLM_NAME, messages=messages, tools=[WEATHER_TOOL], tool_choice="none",
        max_tokens=24, temperature=0,
    )  # fmt: skip
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_chat_json_schema_output_validates(service: Service) -> None:
    reply = _client(service).chat.completions.create(
        model=LLM_NAME,
        messages=[{"role": "user", "content": "Invent a person: a name and an age, in JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
        max_tokens=48, temperature=0,
    )  # fmt: skip
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), PERSON)


def test_embedded_backend_names_itself_for_auto_tool_choice(embedded_service: Service) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(embedded_service).chat.completions.create(
            model=LLM_NAME, messages=ASK, tools=[WEATHER_TOOL], max_tokens=8
        )
    assert err.value.code == "unsupported_by_backend" and "embedded" in err.value.message


# --- errors a client must receive --------------------------------------------------------


def test_an_unsupported_field_is_refused_by_name(server_service: Service) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(server_service).chat.completions.create(
            model=LLM_NAME, messages=ASK, max_tokens=4, logprobs=True
        )
    assert err.value.code == "unsupported_parameter" and "logprobs" in err.value.message
    # OpenAI's bookkeeping fields are harmless: accepted
    ok = _client(server_service).chat.completions.create(
        model=LLM_NAME, messages=ASK, max_tokens=4, user="u-1", store=False,
        metadata={"ticket": "42"},
    )  # fmt: skip
    assert ok.choices[0].message.content is not None


def test_openai_model_names_are_listed(server_service: Service) -> None:
    models = {m.id: m for m in _client(server_service).models.list()}
    for alias in ("whisper-1", "gpt-4o-transcribe", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
        assert alias in models
    assert {LLM_NAME, "whisper-tiny.en", "piper"} <= set(models)
    with pytest.raises(openai.NotFoundError):
        _client(server_service).audio.speech.create(model="tts-9", voice="alloy", input="Hi.")
