"""Cut a streamed reply into pieces TTS can speak as soon as they are complete.

A piece ends at a sentence end (. ! ? or a line break, followed by whitespace, not after a
common abbreviation or between digits as in 3.5). The *first* piece may end earlier, once it
is `first_min_chars` long: at a clause boundary (, ; :) or before a word that opens a phrase
("of", "and", "which"...), where a spoken pause sounds natural. A short first piece is quick
to generate and to synthesise, so the first audio comes sooner; the rest goes by sentences.
No piece exceeds `max_chars`: a longer run is cut at its last clause boundary or space.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "no", "jr", "sr"}
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n+")
_CLAUSE_END = re.compile(r"[,;:](?=\s)")
_PHRASE_OPENERS = (
    "and|but|or|so|because|which|who|that|when|where|while|with|of|in|on|for|to|from|"
    "about|by|as|after|before|since|until|if"
)
# a space before a complete phrase-opening word (the word is followed by a space)
_PHRASE_BREAK = re.compile(rf"\s(?=(?:{_PHRASE_OPENERS})\s)", re.IGNORECASE)


class SentenceChunker:
    def __init__(self, max_chars: int = 160, first_min_chars: int = 40) -> None:
        self.max_chars = max_chars
        self.first_min_chars = first_min_chars
        self._buf = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the pieces completed by it."""
        self._buf += text
        pieces: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        """The rest, at the end of the stream."""
        rest, self._buf = self._buf.strip(), ""
        out: list[str] = []
        while len(rest) > self.max_chars:
            cut = self._hard_cut(rest)
            out.append(rest[:cut].strip())
            rest = rest[cut:].strip()
        if rest:
            out.append(rest)
        return out

    def _find_cut(self) -> int | None:
        buf = self._buf
        for match in _SENTENCE_END.finditer(buf):
            end = match.end()
            if match.group().startswith(".") and self._not_a_sentence_end(buf, match.start()):
                continue
            if buf[:end].strip():
                return end
        if self._emitted == 0 and len(buf) >= self.first_min_chars:
            clauses = [m.end() for m in _CLAUSE_END.finditer(buf)]
            usable = [c for c in clauses if c >= self.first_min_chars // 2]
            if usable:
                return usable[0]
            breaks = [m.start() for m in _PHRASE_BREAK.finditer(buf)]
            usable = [b for b in breaks if b >= self.first_min_chars]
            if usable:
                return usable[0]
        if len(buf) > self.max_chars:
            return self._hard_cut(buf)
        return None

    @staticmethod
    def _not_a_sentence_end(buf: str, dot: int) -> bool:
        word = re.search(r"([\w.]+)$", buf[:dot])
        if word is None:
            return False
        token = word.group(1).lower()
        if token in _ABBREVIATIONS:
            return True
        # a single capital letter: an initial ("J. Smith")
        return len(token) == 1 and buf[dot - 1].isupper()

    def _hard_cut(self, text: str) -> int:
        window = text[: self.max_chars]
        clauses = [m.end() for m in _CLAUSE_END.finditer(window)]
        if clauses and clauses[-1] > self.max_chars // 2:
            return clauses[-1]
        space = window.rfind(" ")
        return space if space > self.max_chars // 2 else self.max_chars
