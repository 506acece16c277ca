"""What of a spoken reply the user heard: the text to keep in the history after a cut.

A reply is spoken piece by piece (sentences into TTS); each piece's audio duration is known.
Two ways to learn how much was played:
- the client says so (`conversation.item.truncate` with `audio_end_ms`): the pieces fully
  played are kept, plus the words of the piece being played in proportion to the part of
  its audio played (speech runs at a roughly even pace of words);
- otherwise the server's own estimate at the barge-in: the audio sent, but no more than the
  time since the first audio went out (the client plays in real time), cut at the last piece
  that finished playing (the estimate is not exact enough to cut inside a piece).
Text generated but never synthesised was not heard. The heard text is always a prefix of
the generated text, so the slot's KV cache (prompt + generated tokens) matches the next
prompt up to the cut and llama-server re-prefills only from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"\S+")


@dataclass
class Spoken:
    text: str = ""  # everything generated
    # (start, end) offsets into `text` and audio seconds, in the order spoken
    pieces: list[tuple[int, int, float]] = field(default_factory=list)

    def add(self, text: str, piece: str, seconds: float) -> None:
        """`piece` (a stripped part of `text`, the reply so far) was spoken in `seconds`."""
        self.text = text
        cursor = self.pieces[-1][1] if self.pieces else 0
        start = text.find(piece, cursor)
        if start < 0:  # not found verbatim: count it as the rest so far
            start = cursor
        self.pieces.append((start, start + len(piece) if start >= cursor else len(text), seconds))

    @property
    def audio_s(self) -> float:
        return sum(s for _, _, s in self.pieces)

    def heard(self, played_s: float, within_piece: bool) -> str:
        """The text heard after `played_s` seconds of playback (a prefix of `text`)."""
        cut = 0
        start_s = 0.0
        for start, end, seconds in self.pieces:
            end_s = start_s + seconds
            if end_s <= played_s + 1e-3:
                cut = end
            else:
                if within_piece and played_s > start_s and seconds > 0:
                    words = list(_WORD.finditer(self.text, start, end))
                    n = int(len(words) * (played_s - start_s) / seconds)
                    if n:
                        cut = words[n - 1].end()
                break
            start_s = end_s
        return self.text[:cut].rstrip()
