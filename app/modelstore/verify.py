"""Verification of model files: size, sha256 and (for .gguf) the GGUF header.

A file is accepted only when it is byte for byte what the catalog names. Hashing a 2 GB
model costs seconds on a Jetson, so a verified file gets a stamp (sha256 + size + mtime +
inode + ctime); while the stamp still matches the file's stat it is not hashed again, and any change
to the file (rewrite, truncation, touch) invalidates the stamp and forces a re-hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..gguf import GGUFError, read_header

CHUNK = 4 * 1024 * 1024


class VerifyError(ValueError):
    """A file is not the one the catalog names (the message says which and how)."""


@dataclass(frozen=True)
class Stamp:
    sha256: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int  # catches a rewrite that restored the old mtime (utime sets ctime)

    def matches(self, st: os.stat_result) -> bool:
        mine = (self.size, self.mtime_ns, self.inode, self.ctime_ns)
        return mine == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


@dataclass(frozen=True)
class Verified:
    path: Path
    sha256: str
    size: int
    hashed: bool  # False: accepted from a still-valid stamp, no bytes read
    stamp: Stamp


def sha256_file(path: Path | str) -> tuple[str, int]:
    """(hex sha256, bytes read) of a file, reading large chunks into one reused buffer."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(buf):
            h.update(view[:n])
            total += n
    return h.hexdigest(), total


def _pump(src: IO[bytes], out: IO[bytes], h: Any, limit: int | None = None) -> int:
    total = 0
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit - total)
        if want <= 0:
            break
        data = src.read(want)
        if not data:
            break
        h.update(data)
        out.write(data)
        total += len(data)
    return total


def copy_hashing(src: IO[bytes], dst: Path, limit: int | None = None) -> tuple[str, int]:
    """Stream src into dst (created/truncated), hashing on the way; stop after `limit` bytes."""
    return join_hashing([src], dst, limit)


def join_hashing(
    sources: Sequence[IO[bytes] | Path], dst: Path, limit: int | None = None
) -> tuple[str, int]:
    """Concatenate sources (open files or paths), in order, into dst (created/truncated),
    hashing the joined bytes on the way; stop after `limit` bytes in all."""
    h = hashlib.sha256()
    total = 0
    with open(dst, "wb") as out:
        for src in sources:
            left = None if limit is None else limit - total
            if isinstance(src, Path):
                with open(src, "rb") as f:
                    total += _pump(f, out, h, left)
            else:
                total += _pump(src, out, h, left)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), total


def gguf_problem(path: Path) -> str | None:
    """Why a .gguf file is not a complete GGUF file, or None when its header is sound."""
    try:
        read_header(path)
    except GGUFError as exc:
        return str(exc).removeprefix(f"{path}: ")
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return None


def verify_file(
    path: Path,
    expected_sha256: str | None,
    expected_size: int | None,
    stamp: Stamp | None = None,
    known_sha256: str | None = None,
) -> Verified:
    """Check a file against its expected size and sha256 (and GGUF header for .gguf).

    Raises VerifyError naming the file with expected vs actual size and sha256.
    With a stamp that still matches the file's stat and the expected sha256, nothing is read;
    `known_sha256` (computed while the file was written) spares the re-read after a download.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VerifyError(f"{path}: missing (expected sha256 {expected_sha256})") from None
    if (
        stamp is not None
        and stamp.matches(st)
        and (expected_sha256 is None or stamp.sha256 == expected_sha256)
        and (expected_size is None or stamp.size == expected_size)
    ):
        return Verified(path, stamp.sha256, stamp.size, hashed=False, stamp=stamp)

    problems = []
    if expected_size is not None and st.st_size != expected_size:
        problems.append(f"size {st.st_size} bytes, expected {expected_size}")
    if path.suffix == ".gguf" and (why := gguf_problem(path)):
        problems.append(f"GGUF: {why}")
    if known_sha256 is not None:
        actual, nread = known_sha256, st.st_size
    else:
        actual, nread = sha256_file(path)
    if expected_sha256 is not None and actual != expected_sha256:
        problems.insert(0, f"sha256 mismatch: expected {expected_sha256}, actual {actual}")
    if problems:
        raise VerifyError(f"{path}: " + "; ".join(problems))
    st_after = path.stat()
    if (st_after.st_size, st_after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise VerifyError(f"{path}: changed while it was being verified")
    new_stamp = Stamp(actual, nread, st.st_mtime_ns, st.st_ino, st_after.st_ctime_ns)
    return Verified(path, actual, nread, hashed=True, stamp=new_stamp)


class StampBook:
    """Stamps of one bundle's files, kept in one JSON file outside the bundle directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamps: dict[str, Stamp] = {}
        try:
            raw = json.loads(path.read_text())
            self.stamps = {name: Stamp(**s) for name, s in raw.get("files", {}).items()}
        except (OSError, ValueError, TypeError):
            self.stamps = {}  # no stamp or an unreadable one: everything is re-hashed

    def get(self, name: str) -> Stamp | None:
        return self.stamps.get(name)

    def put(self, name: str, stamp: Stamp) -> None:
        self.stamps[name] = stamp

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        data = {"files": {n: asdict(s) for n, s in sorted(self.stamps.items())}}
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.path)
