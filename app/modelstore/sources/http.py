"""A plain HTTP(S) mirror: <url>/<path>. Stdlib only (it runs on units inside the zipapp).

Downloads resume with a Range request from what an earlier attempt left in staging
(`<file>.part`); a server that ignores Range (200) restarts the file from zero. A body shorter
than its Content-Length, timeouts, connection errors, 408/429/5xx are transient (retried by
the caller with backoff); other HTTP errors (404, 403) are not. Credentials go only to the
host they were given for (see open_url).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from ..catalog import FileSpec, ModelEntry
from ..verify import CHUNK
from . import FetchContext, SourceError

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "voicefleet-models/1"
# Request headers that carry credentials (urllib stores names str.capitalize()d).
CREDENTIAL_HEADERS = ("Authorization", "Cookie")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _CredentialsStayOnHost(urllib.request.HTTPRedirectHandler):
    """urllib copies every header onto the redirected request whatever the new host, so a
    token sent to the hub would reach the CDN its `resolve` URLs redirect to. Keep credentials
    only while the redirect stays on the same scheme, host and port (a renamed repo on the hub
    itself still needs them). A HEAD stays a HEAD."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        if _origin(new.full_url) != _origin(req.full_url):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
        if req.get_method() == "HEAD":
            new.method = "HEAD"  # urllib re-sends a redirected HEAD as a GET of the whole file
        return new


_OPENER = urllib.request.build_opener(_CredentialsStayOnHost)


def open_url(req: urllib.request.Request, timeout: float) -> http.client.HTTPResponse:
    """urlopen, except that credentials are never forwarded to another host on a redirect."""
    resp: http.client.HTTPResponse = _OPENER.open(req, timeout=timeout)
    return resp


def download(url: str, dest: Path, timeout: float, headers: dict[str, str] | None = None) -> str:
    """GET url into dest (resuming from dest.part); return the sha256 of the whole file."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    req.add_header("Accept-Encoding", "identity")
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = open_url(req, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is longer than the resource: restart
            part.unlink()
            raise SourceError(f"{url}: partial download larger than the file", True) from None
        transient = exc.code in TRANSIENT_STATUS
        raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}", transient) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"{url}: unreachable ({reason})", transient=True) from None
    h = hashlib.sha256()
    with resp:
        if resp.status == 206 and have:
            with open(part, "rb") as f:  # hash what we resume from
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            mode = "ab"
        else:
            have = 0
            mode = "wb"
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        got = have
        try:
            with open(part, mode) as out:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise SourceError(f"{url}: transfer interrupted at {got} bytes ({exc})", True) from None
        except OSError as exc:
            if getattr(exc, "errno", None) is not None:
                raise  # local disk errors (ENOSPC) are not the source's fault
            raise SourceError(f"{url}: transfer interrupted at {got} bytes ({exc})", True) from None
    if expected is not None and got < expected:
        raise SourceError(f"{url}: body cut short: {got} of {expected} bytes", transient=True)
    os.replace(part, dest)
    return h.hexdigest()


class HTTPSource:
    def fetch(self, entry: ModelEntry, spec: FileSpec, dest: Path, ctx: FetchContext) -> str:
        base = entry.source.require("url", entry.name).rstrip("/")
        return download(f"{base}/{spec.path.lstrip('/')}", dest, ctx.timeout)
