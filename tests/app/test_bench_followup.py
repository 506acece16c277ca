"""`voicefleet bench --followup` against the real service and the real llama-server behind it:
every target measured, the history really grows, per-request TTFT samples kept for the
distribution plots. No timing is asserted (figures are printed and written as JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli import main
from tests.app.conftest import Service
from tests.conftest import LlamaServer


def test_followup_bench_measures_service_and_raw_with_and_without_cache(
    server_service: Service, llama_server: LlamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    rc = main([
        "bench", "--url", server_service.url, "--api-key", server_service.headers[
            "Authorization"].removeprefix("Bearer "),
        "--llm-url", llama_server.url, "--llm-api-key", llama_server.api_key,
        "--clients", "1,2", "--requests", "1", "--rounds", "1", "--max-tokens", "8",
        "--voice-turns", "0", "--followup", "--followup-conversations", "2",
        "--followup-rounds", "1", "--followup-max-tokens", "8", "--json", str(out),
    ])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {r["target"]: r for r in report["followup"]}
    assert set(rows) == {"service", "llama-server", "llama-server (cache_prompt off)"}
    for row in rows.values():
        assert row["errors"] == 0
        assert len(row["turn1_first_token_ms"]) == len(row["turn2_first_token_ms"]) == 2
        # turn 1 carries the ~400-token passage; turn 2 adds the reply and the question
        assert row["turn1_prompt_tokens_p50"] > 300
        assert row["turn2_prompt_tokens_p50"] > row["turn1_prompt_tokens_p50"]
        assert row["ratio_p50"] > 0
    # llama-server's own account: with the prompt cache turn 2 prefills only what is new
    # (the reply and the question), without it the whole history again
    cached, uncached = rows["llama-server"], rows["llama-server (cache_prompt off)"]
    assert cached["turn2_server_prompt_n_p50"] < cached["turn2_prompt_tokens_p50"] / 4
    assert uncached["turn2_server_prompt_n_p50"] >= uncached["turn2_prompt_tokens_p50"] - 1
    assert cached["turn1_server_prompt_ms_p50"] > 0
    assert "turn2_server_prompt_n_p50" not in rows["service"]
    for load in report["llm"]:
        assert len(load["ttft_ms"]) == load["requests"] - load["errors"] > 0
    assert {r["clients"] for r in report["ratios"]} == {1, 2}
