"""Bring a catalog entry into the store: verify what is there, else download, verify, install.

Order of operations for one entry (the store lock is held throughout):
1. The bundle dir exists and verifies (stamps make this free when nothing changed):
   only (re)point current/<role> at it.
2. Otherwise check free disk for what is still missing (+ margin), fetch each file into
   .staging/<bundle>/ (from `incoming` when the controller already copied it over, else
   from the source, retrying transient errors with exponential backoff), verify size,
   sha256 and GGUF header, then rename the staging dir into place and flip the link.
   A file made of parts: each part is fetched into .staging/<bundle>/.parts/ and verified
   against its own size and sha256, the parts are joined in catalog order into the file,
   which is then verified as a whole like any other (the parts go once it passes).
Any failure leaves the installed bundles and links exactly as they were.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .catalog import FileSpec, ModelEntry
from .sources import FetchContext, Fetcher, SourceError, fetcher_for
from .store import Store, StoreError
from .verify import Verified, VerifyError, copy_hashing, join_hashing, verify_file

MiB = 1024 * 1024


class FetchError(RuntimeError):
    """An entry could not be installed; the message names the model, file and cause."""


@dataclass
class FetchOptions:
    keep: int = 2  # bundles kept per role, current included (rollback needs >= 2)
    margin: int = 256 * MiB  # free disk required beyond the download itself
    retries: int = 4
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    activate: bool = True


@dataclass
class Outcome:
    entry: ModelEntry
    action: str  # present | installed | replaced (bundle dir existed but failed verification)
    link_changed: bool
    hashed_bytes: int
    pruned: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.action != "present" or self.link_changed or bool(self.pruned)


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def ensure(
    store: Store,
    entry: ModelEntry,
    ctx: FetchContext,
    opts: FetchOptions | None = None,
    log: Log = _quiet,
) -> Outcome:
    opts = opts or FetchOptions()
    reason = entry.unpinned_reason()
    if reason:
        raise FetchError(f"refusing to install an unpinned model: {reason}")
    with store.locked():
        action = "present"
        hashed = 0
        if store.bundle_dir(entry.bundle_id).exists():
            ok, verified, why = store.bundle_ok(entry)
            hashed = sum(v.size for v in verified if v.hashed)
            if not ok:
                log(f"{entry.name}: installed copy is bad, fetching again: {why}")
                action = "replaced"
        else:
            action = "installed"
        if action != "present":
            staged, verified = _download(store, entry, ctx, opts, log)
            hashed += sum(v.size for v in verified if v.hashed)
            store.commit_staged(entry, staged, verified)
            log(f"{entry.name}: installed {store.bundle_dir(entry.bundle_id)}")
        changed = store.activate(entry) if opts.activate else False
        pruned = store.prune(entry.role, opts.keep) if opts.activate else []
    return Outcome(entry, action, changed, hashed, pruned)


def _download(
    store: Store, entry: ModelEntry, ctx: FetchContext, opts: FetchOptions, log: Log
) -> tuple[Path, list[Verified]]:
    staged = store.staging_dir(entry.bundle_id)
    staged.mkdir(parents=True, exist_ok=True)
    need = sum(_missing_bytes(staged, f) for f in entry.files)
    store.check_free(need, opts.margin, f"model {entry.name}")
    verified = []
    for spec in entry.files:
        dest = staged / spec.name
        done = _staged_ok(dest, spec.sha256, spec.size)  # complete from an earlier run
        if done is not None:
            verified.append(done)
            continue
        incoming = _incoming(ctx, entry, spec)
        if incoming is not None:
            verified.append(_take_incoming(incoming, dest, spec, entry, ctx.incoming_move))
        elif spec.parts:
            verified.append(_fetch_joined(entry, spec, dest, ctx, opts, log))
        else:
            fetcher = fetcher_for(entry)
            verified.append(_fetch_with_retries(fetcher, entry, spec, dest, ctx, opts, log))
    return staged, verified


def _staged_ok(dest: Path, sha256: str | None, size: int | None) -> Verified | None:
    """A staged file left complete by an earlier run that failed later on, verified; a bad
    one is removed (None: fetch it)."""
    if not dest.exists() or dest.stat().st_size != size:
        return None
    try:
        return verify_file(dest, sha256, size)
    except VerifyError:
        dest.unlink()
        return None


def _part_path(staged: Path, spec: FileSpec, index: int) -> Path:
    return staged / ".parts" / f"{spec.name}.{index + 1}"


def _missing_bytes(staged: Path, spec: FileSpec) -> int:
    """Bytes still to be written for one file; a split file's parts and the joined file
    are on disk together until the join verifies."""
    whole = spec.size or 0
    have = _usable_bytes(staged / spec.name, whole)
    if not spec.parts or have == whole:
        return whole - have
    parts = (
        (p.size or 0) - _usable_bytes(_part_path(staged, spec, i), p.size or 0)
        for i, p in enumerate(spec.parts)
    )
    return whole + sum(parts)


def _usable_bytes(path: Path, size: int) -> int:
    try:
        have = path.stat().st_size
    except FileNotFoundError:
        return 0
    return min(have, size)


def _fetch_joined(
    entry: ModelEntry,
    spec: FileSpec,
    dest: Path,
    ctx: FetchContext,
    opts: FetchOptions,
    log: Log,
) -> Verified:
    """Fetch every part of a split file (each verified against its own pin, from its own
    source), join them in catalog order into dest and verify the joined file."""
    paths = []
    for i, part in enumerate(spec.parts):
        path = _part_path(dest.parent, spec, i)
        path.parent.mkdir(exist_ok=True)
        paths.append(path)
        if _staged_ok(path, part.sha256, part.size) is not None:
            continue
        source_entry = replace(entry, source=part.source) if part.source else entry
        fetcher = fetcher_for(source_entry)
        _fetch_with_retries(fetcher, source_entry, spec.part_spec(i), path, ctx, opts, log)
    sha, _ = join_hashing(paths, dest)
    try:
        joined = verify_file(dest, spec.sha256, spec.size, known_sha256=sha)
    except VerifyError as exc:
        dest.unlink(missing_ok=True)  # every part is as pinned: the catalog's join is wrong
        raise FetchError(
            f"model {entry.name} file {spec.name}: joined from {len(paths)} verified parts "
            f"in catalog order, the result is not the file the catalog names: {exc}"
        ) from None
    for path in paths:
        path.unlink()
    log(f"{entry.name}: {spec.name} joined from {len(paths)} parts and verified")
    return joined


def _incoming(ctx: FetchContext, entry: ModelEntry, spec: FileSpec) -> Path | None:
    if ctx.incoming is None:
        return None
    for candidate in (ctx.incoming / entry.bundle_id / spec.name, ctx.incoming / spec.name):
        if candidate.is_file():
            return candidate
    return None


def _take_incoming(
    src: Path, dest: Path, spec: FileSpec, entry: ModelEntry, move: bool
) -> Verified:
    """Take a file handed over next to the store (moved, or copied while hashing) and verify
    it like any download: delivered bytes are never trusted."""
    sha: str | None = None
    if move:
        os.replace(src, dest)
    else:
        with open(src, "rb") as f:
            sha, _ = copy_hashing(f, dest)
    try:
        return verify_file(dest, spec.sha256, spec.size, known_sha256=sha)
    except VerifyError as exc:
        dest.unlink(missing_ok=True)
        raise FetchError(f"model {entry.name}: delivered file {src} is bad: {exc}") from None


def _fetch_with_retries(
    fetcher: Fetcher,
    entry: ModelEntry,
    spec: FileSpec,
    dest: Path,
    ctx: FetchContext,
    opts: FetchOptions,
    log: Log,
) -> Verified:
    remote = entry.source.type in ("hub", "http")
    where = f"model {entry.name} file {spec.name} from {entry.source.describe()}"
    last = ""
    for attempt in range(opts.retries + 1):
        if attempt:
            delay = opts.backoff * 2 ** (attempt - 1)
            log(f"{where}: retry {attempt}/{opts.retries} in {delay:.1f}s ({last})")
            time.sleep(delay)
        try:
            sha = fetcher.fetch(entry, spec, dest, ctx)
        except SourceError as exc:
            last = str(exc)
            if exc.transient:
                continue
            raise FetchError(f"{where}: {exc}") from None
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC: the disk filled up under us (check_free raced)
                dest.unlink(missing_ok=True)
                raise StoreError(f"{where}: disk full in {dest.parent}") from None
            raise
        try:
            return verify_file(dest, spec.sha256, spec.size, known_sha256=sha)
        except VerifyError as exc:
            dest.unlink(missing_ok=True)  # corrupt bytes are never resumed from
            last = str(exc)
            if remote:
                continue  # a cut or mangled transfer may be transient
            raise FetchError(f"{where}: {exc}") from None
    shutil.rmtree(dest.parent / ".cache", ignore_errors=True)
    raise FetchError(
        f"{where}: giving up after {opts.retries + 1} attempts (expected sha256 {spec.sha256}, "
        f"{spec.size} bytes): {last}"
    )
