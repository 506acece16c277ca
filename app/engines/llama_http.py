"""The service's HTTP client for its one upstream, llama-server: a pooled aiohttp session.

Why a pool: the pinned llama.cpp's HTTP server (cpp-httplib, vendor/cpp-httplib/httplib.cpp in
the pinned llama-cpp-python sdist) keeps a connection alive after a streamed answer
(`Keep-Alive: timeout=5, max=100`) and closes it only when the client sends
`Connection: close`, on a status >= 400, after 100 requests, or after 5 s idle. Reusing the
connection saves a connect and the per-connection set-up on the event loop for every request:
with 8 requests arriving at once that set-up is done one after another, so it is the
first-token time the service adds at 8 clients (bench/service_fanin.py, docs/benchmarks.md).

The pool holds at most `pool_size` connections (the LLM gate lets `llm.parallel` chats run at
once; one more keeps readiness probes from queueing behind them) and drops a connection idle
for `KEEPALIVE_S`, under llama-server's 5 s, so a pooled connection is never one the server is
closing. A stream left before its end closes its connection instead of returning it: that is
how llama-server learns the client went, and stops generating.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit

import aiohttp

# under llama-server's keep-alive timeout (5 s, cpp-httplib's CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND)
KEEPALIVE_S = 4.0
_FINISH_LIMIT = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached, or its answer was cut off or not HTTP."""


def check_server_url(url: str) -> str:
    """`url` without a trailing slash; llama-server is reached over plain http:// only."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: llama-server is reached over plain http://host:port")
    return url.rstrip("/")


@contextmanager
def _reading_body() -> Iterator[None]:
    """Body errors as UpstreamError; a silent upstream stays TimeoutError (aiohttp's per-read
    timeout), which the caller words."""
    try:
        yield
    except TimeoutError:
        raise
    except (aiohttp.ClientPayloadError, ValueError) as exc:  # ValueError: a line too long
        raise UpstreamError(f"malformed or cut-off body: {exc!r}") from exc
    except aiohttp.ClientConnectionError as exc:
        raise UpstreamError(f"connection lost: {exc!r}") from exc


class Response:
    """Status and the body of one answer."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.status = resp.status
        self._content = resp.content

    async def body(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (the rest is not read)."""
        out = bytearray()
        with _reading_body():
            while len(out) < limit and (data := await self._content.read(limit - len(out))):
                out += data
        return bytes(out)

    async def finish(self) -> None:
        """Read what is left of the body (after `[DONE]`: the end of the chunked framing), so
        the connection goes back to the pool instead of being closed."""
        await self.body(limit=_FINISH_LIMIT)

    async def lines(self) -> AsyncIterator[str]:
        """The body split into lines (LF or CRLF), as text: server-sent events."""
        with _reading_body():
            async for raw in self._content:
                yield raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


class LlamaHTTP:
    """One pooled session per event loop (the service runs one; tests and benches may reuse
    an engine from another loop, and an aiohttp session belongs to the loop it was made on)."""

    def __init__(self, url: str, headers: Mapping[str, str], *, pool_size: int) -> None:
        self.base_url = check_server_url(url)
        self._host = urlsplit(self.base_url).netloc
        self._headers = dict(headers)
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, limit_per_host=0, keepalive_timeout=KEEPALIVE_S
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                # llama-server sends neither compressed bodies nor needs a User-Agent
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                auto_decompress=False,
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> AsyncIterator[Response]:
        """One request on a pooled connection. `read_timeout` bounds each wait for data (the
        head, then every read of the body); waiting for a free connection counts as connect."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout,
            sock_read=read_timeout,
        )  # fmt: skip
        resp = await self._send(method, path, body, timeout)
        try:
            yield Response(resp)
        finally:
            # read to its end, the connection goes back to the pool; left early, aiohttp closes
            # it, and that is how llama-server learns the client went and stops generating
            resp.release()

    async def _send(
        self, method: str, path: str, body: bytes, limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """The response head. A connection the upstream closed before answering anything is
        tried once more on a fresh one: that is a pooled connection the server dropped as it
        was being reused (its close and our request crossed on the wire), and the request was
        never read. Sending it again is safe for llama-server: a completion has no side
        effect but its slot's prompt cache. A second failure is the upstream's."""
        for attempt in (1, 2):
            try:
                return await self._current().request(
                    method, self.base_url + path, data=body if body else None, timeout=limits
                )
            except aiohttp.ClientConnectorError as exc:
                raise UpstreamError(f"cannot connect to {self._host}: {exc.os_error}") from exc
            except aiohttp.ConnectionTimeoutError as exc:
                raise UpstreamError(f"connecting to {self._host} timed out") from exc
            except TimeoutError:
                raise  # no head within read_timeout: a silent upstream, worded by the caller
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 1:
                    continue
                raise UpstreamError(f"no HTTP response: {exc!r}") from exc
            except (aiohttp.ClientResponseError, aiohttp.ClientConnectionError) as exc:
                raise UpstreamError(f"no HTTP response: {exc!r}") from exc
        raise AssertionError("unreachable")
