"""The Hugging Face hub (or a mirror speaking its API: endpoint from the catalog entry,
`--hf-endpoint`, or HF_ENDPOINT).

Download: `huggingface_hub.hf_hub_download` at the pinned commit into the staging dir
(`local_dir`), which follows the hub's redirects and resumes within a call; it checks only
the size, so the caller verifies sha256 and the GGUF header. Units without huggingface_hub
(the zipapp on a bare unit) fetch the same `/<repo>/resolve/<commit>/<path>` URL with the
stdlib HTTP source, which resumes across attempts.
Pin: `model_info` resolves the revision to a commit; `get_paths_info` gives each file's size
and LFS sha256 (small non-LFS files have no sha256 there: they are downloaded and hashed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..catalog import FileSpec, ModelEntry
from ..verify import sha256_file
from . import FetchContext, SourceError
from .http import TRANSIENT_STATUS, USER_AGENT, download, open_url

DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint_for(entry: ModelEntry, ctx: FetchContext) -> str:
    return (
        entry.source.get("endpoint")
        or ctx.hf_endpoint
        or os.environ.get("HF_ENDPOINT")
        or DEFAULT_ENDPOINT
    ).rstrip("/")


def _token(ctx: FetchContext) -> str | None:
    return ctx.token or os.environ.get("HF_TOKEN") or None


def _classify(exc: Exception, what: str) -> SourceError:
    """Map huggingface_hub errors: missing repo/revision/file is final, the rest transient."""
    name = type(exc).__name__
    final = name in {
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
        "RemoteEntryNotFoundError",
        "GatedRepoError",
        "DisabledRepoError",
    }
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403, 404):
        final = True
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return SourceError(f"{what}: {name}: {first}", transient=not final)


class HubSource:
    def fetch(self, entry: ModelEntry, spec: FileSpec, dest: Path, ctx: FetchContext) -> str | None:
        repo = entry.source.require("repo", entry.name)
        revision = entry.source.require("revision", entry.name)
        endpoint = endpoint_for(entry, ctx)
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            headers = {"Authorization": f"Bearer {t}"} if (t := _token(ctx)) else {}
            url = f"{endpoint}/{repo}/resolve/{quote(revision, safe='')}/{spec.path}"
            return download(url, dest, ctx.timeout, headers)
        _probe(f"{endpoint}/{repo}/resolve/{quote(revision, safe='')}/{spec.path}", ctx)
        local_dir = dest.parent / ".hub"
        try:
            got = hf_hub_download(
                repo_id=repo,
                filename=spec.path,
                revision=revision,
                local_dir=local_dir,
                cache_dir=ctx.cache_dir / "hub",
                endpoint=endpoint,
                token=_token(ctx) or False,
                etag_timeout=ctx.timeout,
            )
        except Exception as exc:  # huggingface_hub raises many types; classify by name
            raise _classify(exc, f"{endpoint}/{repo}@{revision[:12]}/{spec.path}") from None
        os.replace(got, dest)
        return None


def _probe(url: str, ctx: FetchContext) -> None:
    """One quick HEAD with our timeout, so a hub that is down or overloaded fails this
    attempt in seconds (our caller retries with backoff) instead of inside
    huggingface_hub's own, much longer, retry loop."""
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    if t := _token(ctx):
        req.add_header("Authorization", f"Bearer {t}")
    try:
        open_url(req, ctx.timeout).close()
    except urllib.error.HTTPError as exc:
        if exc.code in TRANSIENT_STATUS:
            raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}", True) from None
        # 401/403/404...: huggingface_hub names these precisely (gated, missing revision)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"{url}: unreachable ({reason})", transient=True) from None


@dataclass(frozen=True)
class PinnedFile:
    path: str
    size: int
    sha256: str


def resolve(
    repo: str, revision: str, paths: list[str], endpoint: str, token: str | None = None
) -> tuple[str, dict[str, PinnedFile]]:
    """(commit, path -> size + sha256) for files of a hub repo at a revision."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=endpoint, token=token or False)
    where = f"{endpoint}/{repo}@{revision}"
    try:
        info: Any = api.model_info(repo, revision=revision)
        commit = str(info.sha or "")
        if len(commit) != 40:
            raise SourceError(f"{where}: the hub returned no commit for this revision")
        found = {p.path: p for p in api.get_paths_info(repo, paths, revision=commit)}
    except SourceError:
        raise
    except Exception as exc:
        raise _classify(exc, where) from None
    pinned: dict[str, PinnedFile] = {}
    for path in paths:
        item: Any = found.get(path)
        if item is None or not hasattr(item, "size"):
            raise SourceError(f"{where}: no file {path!r} in the repo at {commit}")
        lfs = getattr(item, "lfs", None)
        if lfs is not None:
            pinned[path] = PinnedFile(path, int(lfs.size), str(lfs.sha256))
            continue
        with tempfile.TemporaryDirectory() as tmp:  # small git file: hash it ourselves
            try:
                got = hf_hub_download(
                    repo_id=repo,
                    filename=path,
                    revision=commit,
                    local_dir=tmp,
                    cache_dir=Path(tmp) / "cache",
                    endpoint=endpoint,
                    token=token or False,
                )
            except Exception as exc:
                raise _classify(exc, f"{where}/{path}") from None
            sha, size = sha256_file(got)
            if size != int(item.size):
                raise SourceError(f"{where}/{path}: {size} bytes, the hub says {item.size}")
            pinned[path] = PinnedFile(path, size, sha)
            shutil.rmtree(tmp, ignore_errors=True)
    return commit, pinned
