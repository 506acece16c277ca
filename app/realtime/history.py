"""Per-session conversation history: items, trimmed to the per-slot context budget.

Policy (docs/realtime.md):
- The prompt is [system, item1, item2, ..., (pending user)]; the system prompt is always kept.
  An item is a user or assistant message with an id (the OpenAI protocol addresses items by
  id: retrieve, delete, truncate).
- Budget = ctx_per_slot - max_tokens (room for the reply) - a small margin.
- Tokens are estimated from characters, calibrated by the prompt_tokens the LLM reported for
  the previous turn (tokens per character of this conversation), plus a per-message overhead
  for the chat template.
- When the next prompt would exceed the budget, the oldest items are dropped in one block
  (ending before a user message, so whole turns go), down to `low_water` x budget.
  llama-server caches the slot's prompt prefix: the system prompt always survives, and
  because trimming happens rarely and in blocks, the prefix stays identical (fully cached)
  for many turns after each trim, instead of shifting every turn.
- An assistant reply keeps only what the user heard (app/realtime/heard.py): after a
  barge-in its text is cut at the audio played, so the next prompt holds the heard part and
  llama-server re-prefills from the cut (the common prefix with the slot's cache ends there).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

from app.engines.base import ChatMessage
from app.realtime.heard import Spoken

MESSAGE_OVERHEAD_TOKENS = 6
MARGIN_TOKENS = 16
DEFAULT_TOKENS_PER_CHAR = 0.3

# function_call: the assistant called a tool (`name`, `arguments` JSON in `text`);
# tool: the client's function_call_output for `call_id` (the output in `text`)
Role = Literal["user", "assistant", "system", "function_call", "tool"]
_ids = itertools.count(1)


def new_item_id() -> str:
    return f"item_{next(_ids):06d}"


@dataclass
class Item:
    id: str
    role: Role
    text: str
    # assistant replies: the pieces spoken and their audio durations (for truncation)
    spoken: Spoken | None = None
    audio_input: bool = False  # a user item that came from speech
    call_id: str = ""  # function_call and tool items
    name: str = ""  # function_call items


@dataclass
class History:
    system_prompt: str
    ctx_per_slot: int
    low_water: float = 0.5
    items: list[Item] = field(default_factory=list)
    tokens_per_char: float = DEFAULT_TOKENS_PER_CHAR
    trims: int = 0

    def _tokens(self, text: str) -> int:
        return int(len(text) * self.tokens_per_char) + MESSAGE_OVERHEAD_TOKENS

    def estimate(self, user: str | None, items: list[Item] | None = None) -> int:
        kept = self.items if items is None else items
        total = self._tokens(self.system_prompt) + (self._tokens(user) if user else 0)
        return total + sum(self._tokens(i.text) for i in kept)

    def budget(self, max_tokens: int) -> int:
        return self.ctx_per_slot - max_tokens - MARGIN_TOKENS

    def fits_alone(self, user: str, max_tokens: int) -> bool:
        return self.estimate(user, []) <= self.budget(max_tokens)

    def _trim(self, user: str | None, max_tokens: int) -> None:
        budget = self.budget(max_tokens)
        if self.estimate(user) <= budget:
            return
        target = int(budget * self.low_water)
        drop = 0
        while drop < len(self.items) and self.estimate(user, self.items[drop:]) > target:
            drop += 1
        # whole turns: the kept part starts at a user message
        while drop < len(self.items) and self.items[drop].role != "user":
            drop += 1
        if drop:
            del self.items[:drop]
            self.trims += 1

    def messages(self, user: str | None, max_tokens: int) -> list[ChatMessage]:
        """The prompt for the next reply (`user`: a request not yet in the history),
        trimming old turns first when over budget."""
        self._trim(user, max_tokens)
        out: list[ChatMessage] = [{"role": "system", "content": self.system_prompt}]
        for i in self.items:
            if i.role == "function_call":
                call = {"id": i.call_id, "type": "function",
                        "function": {"name": i.name, "arguments": i.text}}  # fmt: skip
                last = out[-1]
                if last["role"] == "assistant" and "tool_calls" in last:
                    last["tool_calls"].append(call)  # parallel calls: one message
                else:
                    out.append({"role": "assistant", "content": "", "tool_calls": [call]})
            elif i.role == "tool":
                out.append({"role": "tool", "tool_call_id": i.call_id, "content": i.text})
            elif i.text:
                out.append({"role": i.role, "content": i.text})
        if user:
            out.append({"role": "user", "content": user})
        return out

    def calibrate(self, messages: list[ChatMessage], prompt_tokens: int) -> None:
        """Learn tokens per character from what the LLM reported for `messages`."""
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        overhead = MESSAGE_OVERHEAD_TOKENS * len(messages)
        if prompt_tokens > overhead and chars > 200:
            # 10% headroom: the next turn's text may tokenize less well
            self.tokens_per_char = 1.1 * (prompt_tokens - overhead) / chars

    def append(self, item: Item) -> Item:
        self.items.append(item)
        return item

    def add(self, user: str, assistant: str) -> None:
        """One whole turn (the Wyoming handler's way)."""
        self.append(Item(new_item_id(), "user", user))
        self.append(Item(new_item_id(), "assistant", assistant))

    def get(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    def previous_id(self, item_id: str | None = None) -> str | None:
        """The id of the item before `item_id` (None: the last item)."""
        ids = [i.id for i in self.items]
        if item_id is None:
            return ids[-1] if ids else None
        at = ids.index(item_id) if item_id in ids else len(ids)
        return ids[at - 1] if at > 0 else None

    def delete(self, item_id: str) -> bool:
        item = self.get(item_id)
        if item is None:
            return False
        self.items.remove(item)
        return True

    @property
    def turns(self) -> int:
        """User messages in the history."""
        return sum(1 for i in self.items if i.role == "user")
