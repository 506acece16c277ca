"""The service's client of llama-server (app/engines/llama_http.py) against upstream faults the real
llama-server does not produce on demand: nothing listening, a silent peer, a peer that speaks
no HTTP, a stream cut off mid-answer, an error page that is not JSON. Each gets a clear error
(503 llm_unavailable, or an error event once the stream has begun) and the service goes on
serving. The framings llama-server uses (chunked, Content-Length, close-delimited) are read
byte-exact, whatever the packet boundaries. Connections are kept alive as llama-server keeps
them, and a stream left early closes its connection (how llama-server learns to stop)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing, suppress
from dataclasses import dataclass

import httpx
import pytest

from app.engines import llama_http
from tests.app.conftest import LLM_NAME, Service, make_settings, run_service
from tests.conftest import LlamaServer, ModelPaths, free_port

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CHAT = {"model": LLM_NAME, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4}


def _event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))


async def _healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Answer GET /health like llama-server; True if the request was something else."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    if head.startswith(b"GET /health"):
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"status":"ok"}')
        await writer.drain()
        writer.close()
        return False
    return True


@dataclass
class Upstream:
    """A loopback TCP peer whose answer to a chat request is `behaviour`."""

    port: int
    behaviour: Behaviour | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream(free_port())
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await _healthy(reader, writer) and up.behaviour is not None:
                await up.behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", up.port)
        ready.set()
        async with server:
            await server.serve_forever()

    task = loop.create_task(main())

    def run() -> None:
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        # peers still answering (the silent one sleeps) end with the loop
        left = asyncio.all_tasks(loop)
        for t in left:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield up
    loop.call_soon_threadsafe(task.cancel)
    thread.join(10)


@pytest.fixture(scope="module")
def service(model_paths: ModelPaths, upstream: Upstream) -> Iterator[Service]:
    settings = make_settings(
        model_paths, "server", stt={"enabled": False}, tts={"enabled": False},
        llm={"server_url": upstream.url, "request_timeout_s": 1.0},
    )  # fmt: skip
    with closing(run_service(settings, None)) as running:
        yield next(running)


async def _answers_well(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # llama-server's shape: chunked SSE, an event split across chunks, CRLF line ends
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    whole = _event("Hello") + b"\r\n\r\n" + _event(" there") + b"\n\n"
    for part in (whole[:7], whole[7:40], whole[40:]):
        writer.write(_chunk(part))
        await writer.drain()
    done = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 2}}).encode()  # fmt: skip
    writer.write(_chunk(b"data: " + done + b"\n\ndata: [DONE]\n\n") + b"0;ext=1\r\nX-T: 1\r\n\r\n")
    await writer.drain()


def _chat(service: Service, **extra: object) -> httpx.Response:
    with service.client() as c:
        return c.post("/v1/chat/completions", json={**CHAT, **extra}, timeout=30)


def _still_serves(service: Service, upstream: Upstream) -> None:
    upstream.behaviour = _answers_well
    r = _chat(service)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello there"
    assert r.json()["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


def test_a_well_formed_stream_is_read_whatever_the_chunking(
    service: Service, upstream: Upstream
) -> None:
    _still_serves(service, upstream)


def test_nothing_listening_is_a_clear_503(model_paths: ModelPaths) -> None:
    settings = make_settings(
        model_paths, "server", stt={"enabled": False}, tts={"enabled": False},
        llm={"server_url": f"http://127.0.0.1:{free_port()}"},
    )  # fmt: skip
    with closing(run_service(settings, None, ready=False)) as running:
        svc = next(running)
        with svc.client() as c:
            assert c.get("/readyz").json()["checks"] == {"llm": False}
        r = _chat(svc)
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "llm_unavailable" and "cannot connect" in error["message"]
        assert r.headers["retry-after"]


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)  # the request was read; no answer


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


async def _text_error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nupstream hm")
    await writer.drain()


async def _cut_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(_chunk(_event("Once") + b"\n\n") + b"40\r\nonly part of a chunk")
    await writer.drain()


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (_silent, "timed out"),
        (_not_http, "no HTTP response"),
        (_text_error, "HTTP 502: upstream hm"),
    ],
    ids=["silent", "not-http", "text-error"],
)
def test_upstream_faults_are_a_clear_503_and_the_service_goes_on(
    service: Service, upstream: Upstream, behaviour: Behaviour, words: str
) -> None:
    upstream.behaviour = behaviour
    r = _chat(service)
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "llm_unavailable" and words in error["message"], error
    _still_serves(service, upstream)


def test_a_stream_cut_off_mid_answer_ends_with_an_error_event(
    service: Service, upstream: Upstream
) -> None:
    upstream.behaviour = _cut_off
    with service.client() as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30)
    assert r.status_code == 200  # the first token had come: the error is in the stream
    events = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    assert any(e.get("choices", [{}])[0].get("delta", {}).get("content") == "Once"
               for e in events if e.get("choices"))  # fmt: skip
    error = events[-1]["error"]
    assert error["code"] == "llm_unavailable" and "cut-off" in error["message"]
    _still_serves(service, upstream)


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 11\r\n\r\nhello\nworld", b"\r\nhello\r\nworld"],
    ids=["content-length", "until-close"],
)
async def test_bodies_framed_by_length_or_by_close(framing: bytes) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = llama_http.LlamaHTTP(f"http://127.0.0.1:{port}", {}, pool_size=2)
        async with client.request("POST", "/x", b"{}", connect_timeout=2, read_timeout=2) as resp:
            assert resp.status == 200
            assert [line async for line in resp.lines()] == ["hello", "world"]
        await client.aclose()


def test_only_plain_http_upstreams() -> None:
    with pytest.raises(ValueError, match="plain http"):
        llama_http.check_server_url("https://127.0.0.1:8080")
    assert llama_http.check_server_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


async def _keep_alive_upstream(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]], accepted: list[asyncio.Event]
) -> asyncio.Server:
    """A peer that serves request after request on one connection, as llama-server does; each
    accepted connection appends an event set when that connection ends."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ended = asyncio.Event()
        accepted.append(ended)
        try:
            while True:
                await _request(reader)
                await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            ended.set()
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_kept_alive_connection_is_reused_and_an_abandoned_stream_closes_it() -> None:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for word in (b"one", b"two", b"three"):
            writer.write(_chunk(b"data: " + word + b"\n\n"))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    accepted: list[asyncio.Event] = []
    server = await _keep_alive_upstream(answer, accepted)
    port = server.sockets[0].getsockname()[1]
    client = llama_http.LlamaHTTP(f"http://127.0.0.1:{port}", {}, pool_size=2)
    try:
        async with server:
            for _ in range(3):
                async with client.request("POST", "/x", b"{}", connect_timeout=2,
                                          read_timeout=2) as resp:  # fmt: skip
                    assert [line async for line in resp.lines() if line] == [
                        "data: one", "data: two", "data: three",
                    ]  # fmt: skip
            assert len(accepted) == 1 and not accepted[0].is_set()  # one connection, kept
            async with client.request("POST", "/x", b"{}", connect_timeout=2,
                                      read_timeout=2) as resp:  # fmt: skip
                async for _ in resp.lines():
                    break  # the listener went (barge-in): the upstream must see it
            await asyncio.wait_for(accepted[0].wait(), 2)
            async with client.request("POST", "/x", b"{}", connect_timeout=2,
                                      read_timeout=2) as resp:  # fmt: skip
                await resp.finish()
            assert len(accepted) == 2  # a new connection after the closed one
    finally:
        await client.aclose()


@asynccontextmanager
async def _pooled_client_of(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[llama_http.LlamaHTTP]:
    """The service's pooled client of a loopback peer that runs `handle` per connection."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = llama_http.LlamaHTTP(f"http://127.0.0.1:{port}", {}, pool_size=2)
    try:
        async with server:
            yield client
    finally:
        await client.aclose()


async def test_a_kept_connection_closed_as_it_is_reused_is_retried_once_on_a_fresh_one() -> None:
    """The upstream answers the first request of a connection and closes the connection when
    the next one arrives, unanswered: the close crossing our reuse of it. The client sends the
    request again on a new connection; a peer that never answers on any is an UpstreamError."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            await _request(reader)
            served.append(1)
            writer.write(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\n"
                         b"Content-Length: 2\r\n\r\nok")  # fmt: skip
            await writer.drain()
            await _request(reader)  # the reused connection's request: closed, not answered
        writer.close()

    async with _pooled_client_of(handle) as client:
        for _ in range(3):
            async with client.request("POST", "/x", b"{}", connect_timeout=2,
                                      read_timeout=2) as resp:  # fmt: skip
                assert resp.status == 200 and await resp.body(16) == b"ok"
        assert len(served) == 3  # every request answered, each on its own connection

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            await _request(reader)
        writer.close()

    async with _pooled_client_of(never) as client:
        with pytest.raises(llama_http.UpstreamError, match="no HTTP response"):
            async with client.request("POST", "/x", b"{}", connect_timeout=2,
                                      read_timeout=2):  # fmt: skip
                pass


async def test_the_pinned_llama_server_keeps_a_streamed_answer_alive(
    llama_server: LlamaServer,
) -> None:
    """The premise of the pool, checked against the real peer: no `Connection: close` after a
    streamed answer, and llama-server's keep-alive (5 s) above the pool's."""
    import aiohttp

    body = {"messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2, "stream": True}
    headers = {"Authorization": f"Bearer {llama_server.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{llama_server.url}/v1/chat/completions", json=body) as r:
            assert r.status == 200
            await r.read()
        assert "close" not in r.headers.get("Connection", "").lower()
        timeout = r.headers["Keep-Alive"].split(",")[0]
        assert float(timeout.split("=")[1]) > llama_http.KEEPALIVE_S
