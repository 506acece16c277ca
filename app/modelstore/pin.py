"""`voicefleet models pin`: lock hub entries of the catalog to a commit and LFS sha256.

The catalog is a hand-written group_vars file, so the lock is written back as small text
edits (revision, size, sha256 lines of the entry) that keep comments and layout; the result
is parsed again and must carry exactly the pinned values, else nothing is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .catalog import CatalogError, ModelEntry, load_catalog, parse_catalog
from .sources import FetchContext
from .sources.hub import PinnedFile, endpoint_for, resolve


@dataclass(frozen=True)
class Lock:
    name: str
    commit: str
    files: dict[str, PinnedFile]  # by file name in the store


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int) -> int:
    """End (exclusive) of the YAML list item starting at lines[start] (`- ...`)."""
    base = _indent(lines[start])
    for i in range(start + 1, len(lines)):
        s = lines[i].strip()
        if not s or s.startswith("#"):
            continue
        if _indent(lines[i]) < base or (_indent(lines[i]) == base and s.startswith("- ")):
            return i
    return len(lines)


def _find_item(lines: list[str], lo: int, hi: int, name: str) -> int:
    pat = re.compile(rf"^\s*- name:\s*['\"]?{re.escape(name)}['\"]?\s*(#.*)?$")
    for i in range(lo, hi):
        if pat.match(lines[i]):
            return i
    raise CatalogError(f"cannot find `- name: {name}` in the catalog text")


def _set_key(lines: list[str], lo: int, hi: int, key: str, value: str, indent: int) -> int:
    """Set `key: value` among lines[lo:hi] at this indent; insert after lo if absent.

    Returns how many lines were inserted (0 or 1)."""
    pat = re.compile(rf"^( {{{indent}}}){re.escape(key)}:(\s*)([^#\n]*?)(\s*#.*)?$")
    for i in range(lo, hi):
        m = pat.match(lines[i])
        if m:
            lines[i] = f"{m.group(1)}{key}: {value}"
            return 0
    lines.insert(lo + 1, f"{' ' * indent}{key}: {value}")
    return 1


def pin_text(text: str, lock: Lock) -> str:
    lines = text.split("\n")
    start = _find_item(lines, 0, len(lines), lock.name)
    end = _block_end(lines, start)
    # source.revision
    for i in range(start, end):
        if lines[i].strip() == "source:":
            src_end = next(
                (
                    j
                    for j in range(i + 1, end)
                    if lines[j].strip() and _indent(lines[j]) <= _indent(lines[i])
                ),
                end,
            )
            end += _set_key(lines, i, src_end, "revision", lock.commit, _indent(lines[i]) + 2)
            break
    else:
        raise CatalogError(f"model {lock.name}: expected a block-style `source:` mapping")
    for fname, pinned in lock.files.items():
        item = _find_item(lines, start, end, fname)
        item_end = _block_end(lines, item)
        indent = _indent(lines[item]) + 2
        added = _set_key(lines, item, item_end, "size", str(pinned.size), indent)
        added += _set_key(lines, item, item_end + added, "sha256", pinned.sha256, indent)
        end += added
    return "\n".join(lines)


def resolve_entry(entry: ModelEntry, ctx: FetchContext, revision: str | None = None) -> Lock:
    if entry.source.type != "hub":
        raise CatalogError(
            f"model {entry.name}: only hub entries are pinned from the hub; write size and "
            "sha256 of other sources from the files themselves (`voicefleet models verify`)"
        )
    split = [f.name for f in entry.files if f.parts]
    if split:
        raise CatalogError(
            f"model {entry.name}: {', '.join(split)} is made of parts; pin each part and the "
            "joined file by hand from the files (`voicefleet models verify`)"
        )
    repo = entry.source.require("repo", entry.name)
    rev = revision or entry.source.get("revision") or "main"
    endpoint = endpoint_for(entry, ctx)
    commit, by_path = resolve(repo, rev, [f.path for f in entry.files], endpoint, ctx.token)
    return Lock(entry.name, commit, {f.name: by_path[f.path] for f in entry.files})


def write_locks(path: Path, locks: list[Lock]) -> None:
    text = path.read_text()
    for lock in locks:
        text = pin_text(text, lock)
    import yaml

    catalog = parse_catalog(yaml.safe_load(text), path)
    for lock in locks:  # the edit must say exactly what we resolved
        e = catalog.by_name(lock.name)
        got = {f.name: (f.size, f.sha256) for f in e.files}
        want = {n: (p.size, p.sha256) for n, p in lock.files.items()}
        if e.source.get("revision") != lock.commit or got != want:
            raise CatalogError(f"model {lock.name}: could not write the lock into {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pin_catalog(
    path: Path, names: list[str] | None, ctx: FetchContext, revision: str | None = None
) -> list[Lock]:
    catalog = load_catalog(path)
    entries = [e for e in catalog.select(names) if e.source.type == "hub" or names]
    locks = [resolve_entry(e, ctx, revision) for e in entries]
    if locks:
        write_locks(path, locks)
    return locks
