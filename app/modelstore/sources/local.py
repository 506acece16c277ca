"""A directory of model files: the controller's copy at air-gapped sites, or a mounted share.

Files are looked up as <dir>/<path> (path from the catalog, default the file name) and
copied into staging while being hashed; the source directory is never modified."""

from __future__ import annotations

from pathlib import Path

from ..catalog import FileSpec, ModelEntry
from ..verify import copy_hashing
from . import FetchContext, SourceError


class LocalSource:
    def fetch(self, entry: ModelEntry, spec: FileSpec, dest: Path, ctx: FetchContext) -> str:
        root = Path(entry.source.require("dir", entry.name)).expanduser()
        src = root / spec.path
        try:
            with open(src, "rb") as f:
                sha, _ = copy_hashing(f, dest)
        except FileNotFoundError:
            raise SourceError(f"{src}: no such file in the local source") from None
        except PermissionError:
            raise SourceError(f"{src}: permission denied") from None
        return sha
