"""Follow-up turn first-token time over the chat API (`voicefleet bench --followup`).

N conversations at once. Turn 1 carries a ~400-token history (a passage to summarise, with
an opening unique to the conversation, so no slot can borrow another's cache); turn 2 adds
turn 1's reply and a short question. With prompt caching (llama-server keeps each slot's KV
cache; the service asks for it, `llm.cache_prompt`) turn 2 prefills only its new tokens;
without it, the whole history again. The same client measures every target in one run,
rounds interleaved: the service, and raw llama-server with `cache_prompt` on and off (the
requests a client of llama-server itself would send).
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from app.bench.load import RequestResult, one_request

PASSAGE = (
    "The bicycle began in 1817 as the draisine, a wooden running machine without pedals that "
    "riders pushed along with their feet. In the 1860s French makers added pedals to the front "
    "wheel, and the velocipede, nicknamed the boneshaker, became a fashion in Paris. Larger "
    "front wheels went faster, which led to the high wheeler of the 1870s, elegant but "
    "dangerous, since a rider sat far above the ground. The safety bicycle of the 1880s, with "
    "two wheels of similar size and a chain driving the rear wheel, solved that problem, and "
    "the pneumatic tyre, patented by John Boyd Dunlop in 1888, made the ride comfortable. "
    "Within a decade millions of people owned one. Bicycles gave women new independence, "
    "changed courtship in the countryside, and pushed governments to pave roads, which later "
    "served the automobile. Factories that built bicycles trained the mechanics who went on to "
    "build cars and aeroplanes; the Wright brothers ran a bicycle shop. In the twentieth "
    "century the bicycle became a cheap, everyday vehicle in Asia and Europe, while in North "
    "America it was mostly a toy until the fitness boom of the 1970s. Today city planners "
    "build protected lanes, electric assistance extends the range of ordinary riders, and "
    "shared bicycles stand on street corners in hundreds of cities around the world. "
)
# what the user said before the passage: with it turn 1 is ~400 tokens (Llama 3's tokenizer)
PLANS = (
    "Some context first. My family is planning a cycling holiday along the Danube next "
    "summer, from Passau to Vienna, with our two children, who are eight and eleven years "
    "old. We have never ridden more than twenty kilometres in a day, we will carry our own "
    "luggage in panniers, and we would like to stop at a campsite or a small guest house "
    "every night. The older child rides a proper bicycle with gears, the younger one still "
    "has a small one without gears, and my partner is thinking about renting an electric "
    "bicycle for the trip. We want to understand where bicycles came from before we buy "
    "anything, because the children keep asking questions about it. "
)
ASK = f"{PLANS}Read this: {PASSAGE} Summarise it in one sentence."
FOLLOW_UP = "Which invention made riding comfortable?"
SYSTEM = "You are a helpful voice assistant. Answer briefly in plain spoken sentences."


@dataclass
class Target:
    name: str
    url: str
    api_key: str | None
    # added to each request body (raw llama-server: {"cache_prompt": false})
    extra: dict[str, Any] | None = None


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1) if values else 0.0


async def _round(
    target: Target, model: str, conversations: int, max_tokens: int
) -> tuple[list[RequestResult], list[RequestResult]]:
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    tag = uuid.uuid4().hex[:8]
    histories = [
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Conversation {tag}-{i}. {ASK}"},
        ]
        for i in range(conversations)
    ]
    limits = httpx.Limits(max_connections=conversations + 2)
    async with httpx.AsyncClient(
        base_url=target.url.rstrip("/"), headers=headers, timeout=300, limits=limits
    ) as client:

        async def turn(messages: list[dict[str, str]]) -> RequestResult:
            return await one_request(
                client, model, max_tokens, messages=messages, extra=target.extra
            )

        first = await asyncio.gather(*(turn(h) for h in histories))
        for history, result in zip(histories, first, strict=True):
            history += [
                {"role": "assistant", "content": result.text},
                {"role": "user", "content": FOLLOW_UP},
            ]
        second = await asyncio.gather(*(turn(h) for h in histories))
    return list(first), list(second)


async def run_followup(
    targets: list[Target], model: str, conversations: int, max_tokens: int, rounds: int
) -> list[dict[str, Any]]:
    """Per target: turn-1 and turn-2 first-token times (median over conversations and
    rounds), their ratio, the prompt sizes, and errors."""
    results: dict[str, list[tuple[list[RequestResult], list[RequestResult]]]] = {
        t.name: [] for t in targets
    }
    for _ in range(rounds):
        for target in targets:
            results[target.name].append(await _round(target, model, conversations, max_tokens))
    report = []
    for target in targets:
        turn1 = [r for first, _ in results[target.name] for r in first]
        turn2 = [r for _, second in results[target.name] for r in second]
        ok1, ok2 = [r for r in turn1 if r.ok], [r for r in turn2 if r.ok]
        p50_1, p50_2 = _ms([r.ttft_s for r in ok1]), _ms([r.ttft_s for r in ok2])
        report.append(
            {
                "target": target.name,
                "conversations": conversations,
                "rounds": rounds,
                "turn1_prompt_tokens_p50": statistics.median([r.prompt_tokens for r in ok1])
                if ok1 else 0,
                "turn2_prompt_tokens_p50": statistics.median([r.prompt_tokens for r in ok2])
                if ok2 else 0,
                "turn1_first_token_p50_ms": p50_1,
                "turn2_first_token_p50_ms": p50_2,
                "turn1_first_token_ms": [round(r.ttft_s * 1000, 1) for r in ok1],
                "turn2_first_token_ms": [round(r.ttft_s * 1000, 1) for r in ok2],
                "ratio_p50": round(p50_2 / p50_1, 3) if p50_1 else 0.0,
                # raw llama-server only: what it prefilled itself and how long it took
                **_server_side(ok1, "turn1"),
                **_server_side(ok2, "turn2"),
                "errors": len(turn1) + len(turn2) - len(ok1) - len(ok2),
                "error_samples": [r.error for r in turn1 + turn2 if not r.ok][:3],
            }
        )  # fmt: skip
    return report


def _server_side(results: list[RequestResult], turn: str) -> dict[str, float]:
    n = [r.server_prompt_n for r in results if r.server_prompt_n is not None]
    ms = [r.server_prompt_ms for r in results if r.server_prompt_ms is not None]
    if not n or not ms:
        return {}
    return {
        f"{turn}_server_prompt_n_p50": statistics.median(n),
        f"{turn}_server_prompt_ms_p50": round(statistics.median(ms), 1),
    }


def print_followup(rows: list[dict[str, Any]]) -> None:
    print("\nfollow-up turn first token (chat API; turn 2 vs turn 1, p50 over conversations)")
    for r in rows:
        print(f"  {r['target']:<28} {r['conversations']} conversations: turn 1 "
              f"{r['turn1_first_token_p50_ms']:.0f} ms ({r['turn1_prompt_tokens_p50']:.0f} "
              f"prompt tokens), turn 2 {r['turn2_first_token_p50_ms']:.0f} ms "
              f"({r['turn2_prompt_tokens_p50']:.0f}), ratio {r['ratio_p50']:.3f}, "
              f"errors {r['errors']}")  # fmt: skip
        if "turn2_server_prompt_n_p50" in r:
            print(f"  {'':<28} llama-server prefilled {r['turn1_server_prompt_n_p50']:.0f} / "
                  f"{r['turn2_server_prompt_n_p50']:.0f} tokens in "
                  f"{r['turn1_server_prompt_ms_p50']:.1f} / "
                  f"{r['turn2_server_prompt_ms_p50']:.1f} ms (turn 1 / turn 2, p50)")  # fmt: skip
