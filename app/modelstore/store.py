"""The content-addressed model store on a unit (or a developer machine).

Layout (the voice service and the llamacpp role depend on it):

    <root>/<sha256 of the bundle's primary file>/<file names>   one directory per bundle
    <root>/current/<role> -> ../<sha256>                          relative link per role
    <root>/.verified/<sha256>.json    stamps: sha256 + size + mtime + inode per file
    <root>/.history/<role>.json       bundles that served the role, newest last (rollback)
    <root>/.staging/<sha256>/         downloads in progress (kept, so they resume)
    <root>/.lock                      one writer at a time

A bundle directory only appears by rename of a fully verified staging directory, and a role
switches bundles by renaming a new link over `current/<role>`: a reader sees the old model or
the new one, never a mix; a failed download never touches what is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .catalog import SHA256_RE, ModelEntry
from .verify import StampBook, Verified, VerifyError, verify_file

DIR_MODE = 0o755
FILE_MODE = 0o644


class StoreError(RuntimeError):
    """The store cannot do what was asked (disk full, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class Installed:
    role: str
    bundle: str
    dir: Path
    files: tuple[str, ...]
    name: str


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class Store:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # --- paths ---------------------------------------------------------------------------
    def bundle_dir(self, bundle: str) -> Path:
        return self.root / bundle

    def current_link(self, role: str) -> Path:
        return self.root / "current" / role

    def stamps(self, bundle: str) -> StampBook:
        return StampBook(self.root / ".verified" / f"{bundle}.json")

    def staging_dir(self, bundle: str) -> Path:
        return self.root / ".staging" / bundle

    def _history_path(self, role: str) -> Path:
        return self.root / ".history" / f"{role}.json"

    # --- state ---------------------------------------------------------------------------
    def init(self) -> None:
        for d in (self.root, self.root / "current"):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(DIR_MODE)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.init()
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def current(self, role: str) -> str | None:
        """Bundle id the role's link points at (None when there is no valid link)."""
        try:
            target = os.readlink(self.current_link(role))
        except OSError:
            return None
        bundle = Path(target).name
        return bundle if SHA256_RE.match(bundle) else None

    def history(self, role: str) -> list[dict[str, str]]:
        try:
            data = json.loads(self._history_path(role).read_text())
        except (OSError, ValueError):
            return []
        return [h for h in data if isinstance(h, dict) and "bundle" in h]

    def _write_history(self, role: str, items: list[dict[str, str]]) -> None:
        path = self._history_path(role)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(items, indent=1) + "\n")
        os.replace(tmp, path)

    def installed(self, role: str) -> Installed | None:
        bundle = self.current(role)
        if bundle is None or not self.bundle_dir(bundle).is_dir():
            return None
        files = tuple(sorted(p.name for p in self.bundle_dir(bundle).iterdir() if p.is_file()))
        name = next((h.get("name", "") for h in self.history(role) if h["bundle"] == bundle), "")
        return Installed(role, bundle, self.bundle_dir(bundle), files, name)

    # --- verification --------------------------------------------------------------------
    def verify_bundle(self, entry: ModelEntry, directory: Path | None = None) -> list[Verified]:
        """Verify every file of an entry in its bundle dir (stamps spare unchanged files)."""
        bundle = entry.bundle_id
        directory = directory or self.bundle_dir(bundle)
        book = self.stamps(bundle)
        results = []
        for spec in entry.files:
            v = verify_file(directory / spec.name, spec.sha256, spec.size, book.get(spec.name))
            results.append(v)
            book.put(spec.name, v.stamp)
        if any(v.hashed for v in results):
            book.save()
        return results

    def bundle_ok(self, entry: ModelEntry) -> tuple[bool, list[Verified], str]:
        try:
            return True, self.verify_bundle(entry), ""
        except VerifyError as exc:
            return False, [], str(exc)

    # --- changes -------------------------------------------------------------------------
    def check_free(self, need: int, margin: int, what: str) -> None:
        """Fail before downloading when the store's filesystem lacks need + margin bytes."""
        self.init()
        free = shutil.disk_usage(self.root).free
        if free < need + margin:
            raise StoreError(
                f"not enough disk for {what} in {self.root}: need {human(need)} "
                f"+ {human(margin)} margin, {human(free)} free"
            )

    def commit_staged(self, entry: ModelEntry, staged: Path, verified: list[Verified]) -> None:
        """Move a verified staging dir into place as the bundle dir (atomic rename)."""
        bundle = entry.bundle_id
        final = self.bundle_dir(bundle)
        for spec in entry.files:
            (staged / spec.name).chmod(FILE_MODE)
        for extra in staged.iterdir():  # partial files, hub metadata: not part of the bundle
            if extra.name not in {f.name for f in entry.files}:
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        staged.chmod(DIR_MODE)
        if final.exists():  # present but failed verification: set it aside, never mix
            trash = self.root / ".trash" / f"{bundle}.{time.time_ns()}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(staged, final)
        book = self.stamps(bundle)
        for spec, v in zip(entry.files, verified, strict=True):
            # chmod above moved ctime; content is as verified (same inode, size, mtime)
            st = (final / spec.name).stat()
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (
                v.stamp.inode,
                v.stamp.size,
                v.stamp.mtime_ns,
            ):
                raise StoreError(f"{final / spec.name}: changed during install")
            book.put(spec.name, replace(v.stamp, ctime_ns=st.st_ctime_ns))
        book.save()
        _fsync_dir(self.root)

    def activate(self, entry: ModelEntry) -> bool:
        """Point current/<role> at the entry's bundle; True when the link changed."""
        changed = self._point(entry.role, entry.bundle_id)
        items = [h for h in self.history(entry.role) if h["bundle"] != entry.bundle_id]
        before = self.history(entry.role)
        items.append({"bundle": entry.bundle_id, "name": entry.name})
        if changed or not before or before[-1]["bundle"] != entry.bundle_id:
            self._write_history(entry.role, items)
        return changed

    def _point(self, role: str, bundle: str) -> bool:
        link = self.current_link(role)
        target = f"../{bundle}"
        with contextlib.suppress(OSError):
            if os.readlink(link) == target:
                return False
        tmp = link.with_name(f".{role}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
        _fsync_dir(link.parent)
        return True

    def rollback(self, role: str, entries: dict[str, ModelEntry] | None = None) -> str:
        """Point the role back at the newest earlier bundle that is still present.

        The bundle is verified first (against the catalog entry when one is given, else
        against its own stamps' sha256); returns the bundle id now current.
        """
        history = self.history(role)
        current = self.current(role)
        older = [h for h in history if h["bundle"] != current]
        for item in reversed(older):
            bundle = item["bundle"]
            if not self.bundle_dir(bundle).is_dir():
                continue
            entry = (entries or {}).get(bundle)
            if entry is not None:
                self.verify_bundle(entry)
            else:
                self._verify_by_stamps(bundle)
            self._point(role, bundle)
            rest = [h for h in history if h["bundle"] != bundle]
            # the rolled-back-from bundle stays just before the new current one (roll forward)
            self._write_history(role, [*rest, item])
            return bundle
        raise StoreError(f"no earlier {role} model in {self.root} to roll back to")

    def _verify_by_stamps(self, bundle: str) -> None:
        book = self.stamps(bundle)
        if not book.stamps:
            raise StoreError(f"{self.bundle_dir(bundle)}: no recorded checksums to verify")
        for name, stamp in book.stamps.items():
            v = verify_file(self.bundle_dir(bundle) / name, stamp.sha256, stamp.size, stamp)
            book.put(name, v.stamp)
        book.save()

    def prune(self, role: str, keep: int) -> list[str]:
        """Delete bundles of this role beyond the `keep` newest (current always stays)."""
        history = self.history(role)
        current = self.current(role)
        in_use = {self.current(r) for r in ("llm", "stt", "tts")}
        kept: list[dict[str, str]] = []
        removed = []
        for item in reversed(history):
            bundle = item["bundle"]
            if len(kept) < max(keep, 1) or bundle == current:
                kept.insert(0, item)
            elif bundle in in_use:
                continue  # another role serves it: not ours to delete, not in our history
            else:
                shutil.rmtree(self.bundle_dir(bundle), ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    (self.root / ".verified" / f"{bundle}.json").unlink()
                removed.append(bundle)
        if removed:
            self._write_history(role, kept)
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
