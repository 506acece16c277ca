"""A small HTTP/1.1 client over asyncio streams, for the service's one upstream: llama-server.

Why not httpx here: a streamed chat request through httpx costs ~1.0 ms of CPU in this
process (a resolver hop to a worker thread even for a literal address, a task group per
connect, event objects per chunk); this costs ~0.24 ms (measured: 8 concurrent SSE requests to
a local server, CPU time per request). With 8 requests arriving at once the event loop does
that work one request after another, so it is the first-token time the service adds at 8
clients. It speaks what llama-server speaks: plain http://, one request per connection, a body
framed by Content-Length, chunked transfer coding, or the end of the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

_HEAD_LIMIT = 64 * 1024  # status line + headers
_READ = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached, or its answer was cut off or not HTTP."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    base_path: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: llama-server is reached over plain http://host:port")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"), parts.netloc)


class Response:
    """Status, headers (lower-case names) and the body, read with a timeout per read."""

    def __init__(
        self, reader: asyncio.StreamReader, status: int, headers: dict[str, str], timeout: float
    ) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._timeout = timeout

    async def _readuntil(self, sep: bytes) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.readuntil(sep)

    async def _readexactly(self, n: int) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.readexactly(n)

    async def _read(self, n: int) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.read(n)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    size_line = await self._readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while await self._readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers
                        return
                    data = await self._readexactly(size)
                    await self._readexactly(2)
                    yield data
            elif "content-length" in self.headers:
                left = int(self.headers["content-length"])
                while left > 0:
                    data = await self._read(min(left, _READ))
                    if not data:
                        raise UpstreamError(f"the body ended {left} bytes short")
                    left -= len(data)
                    yield data
            else:
                while data := await self._read(_READ):
                    yield data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise UpstreamError(f"malformed or cut-off body: {exc!r}") from exc
        except ConnectionError as exc:
            raise UpstreamError(f"connection lost: {exc!r}") from exc

    async def body(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (the rest is not read)."""
        out = bytearray()
        async for data in self.chunks():
            out += data
            if len(out) >= limit:
                break
        return bytes(out[:limit])

    async def lines(self) -> AsyncIterator[str]:
        """The body split into lines (LF or CRLF), as text: server-sent events."""
        pending = b""
        async for data in self.chunks():
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(status_line)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(code), headers
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise UpstreamError(f"no HTTP response: {exc!r}") from exc
    except ConnectionError as exc:
        raise UpstreamError(f"connection lost: {exc!r}") from exc


@asynccontextmanager
async def request(
    endpoint: Endpoint,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    connect_timeout: float,
    read_timeout: float,
) -> AsyncIterator[Response]:
    """One request on its own connection; leaving the block closes it (an upstream that is
    still streaming sees the client go, as llama-server does to stop generating)."""
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, limit=_HEAD_LIMIT
            )
    except TimeoutError as exc:
        raise UpstreamError(f"connecting to {endpoint.host_header} timed out") from exc
    except OSError as exc:
        raise UpstreamError(f"cannot connect to {endpoint.host_header}: {exc}") from exc
    try:
        lines = [
            f"{method} {endpoint.base_path}{path} HTTP/1.1",
            f"Host: {endpoint.host_header}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        async with asyncio.timeout(read_timeout):
            status, response_headers = await _read_head(reader)
        yield Response(reader, status, response_headers, read_timeout)
    finally:
        writer.close()
