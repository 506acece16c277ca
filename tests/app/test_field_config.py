"""The field config's defect, end to end: llama-server run with `-c 2048 -np 8` gives each
slot 256 tokens, so a ~400-token conversation is refused even though the service believes
in 2048 per conversation. The service says so, naming both sizes; the corrected config
(`-c ctx_per_slot x parallel`) serves the same request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.bench.followup import ASK, SYSTEM
from tests.app.conftest import LLM_NAME, Service, make_settings, run_service
from tests.conftest import LlamaServer, ModelPaths, run_llama_server

CONVERSATION = {
    "model": LLM_NAME,
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK}],
    "max_tokens": 8,
}


@pytest.fixture(scope="module")
def field_llama(
    model_paths: ModelPaths, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("field") / "llama-server.log"
    with run_llama_server(
        model_paths.llm_gguf, log, ctx_per_slot=2048, parallel=8, n_ctx=2048
    ) as s:
        yield s


@pytest.fixture(scope="module")
def field_service(model_paths: ModelPaths, field_llama: LlamaServer) -> Iterator[Service]:
    settings = make_settings(
        model_paths, "server", field_llama, stt={"enabled": False}, tts={"enabled": False}
    )
    yield from run_service(settings, None)


def test_field_config_refuses_a_400_token_conversation_and_says_why(
    field_service: Service,
) -> None:
    with field_service.client() as c:
        r = c.post("/v1/chat/completions", json=CONVERSATION)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert "context of 256 tokens" in error["message"]
        assert "llm.ctx_per_slot is 2048" in error["message"]
        assert c.get("/readyz").status_code == 200  # refused, not broken


def test_corrected_config_serves_it(server_service: Service) -> None:
    with server_service.client() as c:
        r = c.post("/v1/chat/completions", json=CONVERSATION)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] > 256
