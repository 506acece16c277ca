"""Per-session conversation history, trimmed to the per-slot context budget.

Policy (docs/realtime.md):
- The prompt is [system, user1, assistant1, ..., userN]; the system prompt is always kept.
- Budget = ctx_per_slot - max_tokens (room for the reply) - a small margin.
- Tokens are estimated from characters, calibrated by the prompt_tokens the LLM reported for
  the previous turn (tokens per character of this conversation), plus a per-message overhead
  for the chat template.
- When the next prompt would exceed the budget, the oldest *whole* turns are dropped in one
  block, down to `low_water` x budget. llama-server caches the slot's prompt prefix: the system
  prompt always survives, and because trimming happens rarely and in blocks, the prefix stays
  identical (fully cached) for many turns after each trim, instead of shifting every turn.
- A cancelled reply (barge-in) is kept as far as it was generated: the user heard it, and
  those tokens are already in the slot's cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MESSAGE_OVERHEAD_TOKENS = 6
MARGIN_TOKENS = 16
DEFAULT_TOKENS_PER_CHAR = 0.3


@dataclass
class Turn:
    user: str
    assistant: str


@dataclass
class History:
    system_prompt: str
    ctx_per_slot: int
    low_water: float = 0.5
    turns: list[Turn] = field(default_factory=list)
    tokens_per_char: float = DEFAULT_TOKENS_PER_CHAR
    trims: int = 0

    def _tokens(self, text: str) -> int:
        return int(len(text) * self.tokens_per_char) + MESSAGE_OVERHEAD_TOKENS

    def estimate(self, user: str, turns: list[Turn] | None = None) -> int:
        kept = self.turns if turns is None else turns
        total = self._tokens(self.system_prompt) + self._tokens(user)
        return total + sum(self._tokens(t.user) + self._tokens(t.assistant) for t in kept)

    def budget(self, max_tokens: int) -> int:
        return self.ctx_per_slot - max_tokens - MARGIN_TOKENS

    def fits_alone(self, user: str, max_tokens: int) -> bool:
        return self.estimate(user, []) <= self.budget(max_tokens)

    def messages(self, user: str, max_tokens: int) -> list[dict[str, str]]:
        """The prompt for the next turn, trimming old turns first when over budget."""
        budget = self.budget(max_tokens)
        if self.estimate(user) > budget:
            target = int(budget * self.low_water)
            drop = 0
            while drop < len(self.turns) and self.estimate(user, self.turns[drop:]) > target:
                drop += 1
            if drop:
                del self.turns[:drop]
                self.trims += 1
        out = [{"role": "system", "content": self.system_prompt}]
        for t in self.turns:
            out.append({"role": "user", "content": t.user})
            out.append({"role": "assistant", "content": t.assistant})
        out.append({"role": "user", "content": user})
        return out

    def calibrate(self, messages: list[dict[str, str]], prompt_tokens: int) -> None:
        """Learn tokens per character from what the LLM reported for `messages`."""
        chars = sum(len(m["content"]) for m in messages)
        overhead = MESSAGE_OVERHEAD_TOKENS * len(messages)
        if prompt_tokens > overhead and chars > 200:
            # 10% headroom: the next turn's text may tokenize less well
            self.tokens_per_char = 1.1 * (prompt_tokens - overhead) / chars

    def add(self, user: str, assistant: str) -> None:
        self.turns.append(Turn(user, assistant))
