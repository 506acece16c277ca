"""The same contract for both LLM backends (llama-server over HTTP, in-process)."""

from __future__ import annotations

import json

from tests.app.conftest import LLM_NAME, Service


def _chat(svc: Service, content: str, **kw: object) -> dict:
    with svc.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": LLM_NAME, "messages": [{"role": "user", "content": content}], **kw},
        )
    assert r.status_code == 200, r.text
    return r.json()


def test_chat_reply_shape_and_usage(service: Service) -> None:
    body = _chat(service, "Name a colour.", max_tokens=16, temperature=0)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["prompt_tokens"] > 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_bounds_the_reply(service: Service) -> None:
    body = _chat(service, "Write a long story about a dragon.", max_tokens=5, temperature=0)
    assert body["usage"]["completion_tokens"] <= 5
    assert body["choices"][0]["finish_reason"] == "length"


def test_streaming_yields_deltas_then_done(service: Service) -> None:
    payload = {
        "model": LLM_NAME,
        "messages": [{"role": "user", "content": "Count from one to five."}],
        "max_tokens": 20,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with service.client() as c, c.stream("POST", "/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def test_conversation_longer_than_context_is_a_clear_400(service: Service) -> None:
    # ~2500 tokens of distinct words: over the 1024-token per-conversation context, under
    # the character limit, so the backend itself must refuse it cleanly.
    long = " ".join(f"w{i}" for i in range(1000))
    with service.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": LLM_NAME, "messages": [{"role": "user", "content": long}]},
        )
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "context_length_exceeded"
        assert "1024" in err["message"]
        # and the service still serves
        assert c.get("/readyz").status_code == 200
    assert _chat(service, "Hello", max_tokens=4)["usage"]["completion_tokens"] >= 1


def test_400_token_prompt_fits_a_slot(service: Service) -> None:
    """The field config's defect (-c 2048 -np 8 = 256 tokens a slot) is gone: each
    conversation has ctx_per_slot tokens."""
    prompt = " ".join(f"note{i}" for i in range(200))  # ~400 tokens
    body = _chat(service, prompt, max_tokens=4)
    assert body["usage"]["prompt_tokens"] > 300
