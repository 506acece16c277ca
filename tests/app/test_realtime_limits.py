"""/v1/realtime refusals and limits: auth before accept, garbage, oversized frames, full
service, idle timeout; each gets a clear answer and the service keeps serving the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.bench.rt_client import RealtimeClient
from tests.app.conftest import API_KEY, Service, make_settings, run_service, server_engines
from tests.conftest import LlamaServer, ModelPaths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_service(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[Service]:
    """Two sessions at most, small frames, a short idle timeout."""
    settings = make_settings(
        model_paths, "server", llama_server,
        realtime={"max_sessions": 2, "max_frame_bytes": 4096, "idle_timeout_s": 1.5},
    )  # fmt: skip
    yield from run_service(settings, server_engines(stt_tts, settings))


def _ws(svc: Service) -> str:
    return svc.url.replace("http://", "ws://") + "/v1/voicefleet/realtime"


async def _refused(svc: Service, **kw: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect(_ws(svc), open_timeout=10, **kw):
            pass
    return info.value


async def _pong(rt: RealtimeClient) -> None:
    count = len(rt.of("pong"))
    await rt.send_event({"type": "ping"})
    await rt.wait_for("pong", count=count + 1, timeout_s=10)


async def _open_when_free(svc: Service, count: int, within_s: float = 30) -> list[RealtimeClient]:
    """`count` sessions at once, retried until the service has the places (a freed place
    comes back when the session's handler has finished; on a busy machine that takes a
    while). A partial set is closed before the next try: it would hold a place itself."""
    deadline = time.monotonic() + within_s
    while True:
        opened: list[RealtimeClient] = []
        try:
            for _ in range(count):
                opened.append(await RealtimeClient.open(svc.url, API_KEY))
            return opened
        except InvalidStatus as exc:
            await asyncio.gather(*(rt.close() for rt in opened))
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} places not free within {within_s} s") from exc
            await asyncio.sleep(0.1)


async def test_wrong_or_missing_key_is_401_before_accept(small_service: Service) -> None:
    missing = await _refused(small_service)
    assert missing.response.status_code == 401
    assert json.loads(missing.response.body or b"{}")["error"]["code"] == "no_key"
    wrong = await _refused(small_service, additional_headers={"Authorization": "Bearer nope"})
    assert wrong.response.status_code == 401
    assert json.loads(wrong.response.body or b"{}")["error"]["code"] == "invalid_api_key"
    # browsers: the key as a subprotocol
    bad_proto = await _refused(small_service, subprotocols=["voicefleet.v1", "bearer.nope"])
    assert bad_proto.response.status_code == 401
    async with connect(
        _ws(small_service), subprotocols=["voicefleet.v1", f"bearer.{API_KEY}"]
    ) as ws:
        assert ws.subprotocol == "voicefleet.v1"
        assert json.loads(await ws.recv())["type"] == "session.created"


async def test_garbage_gets_error_events_then_1008_others_unaffected(
    small_service: Service,
) -> None:
    other = await RealtimeClient.open(small_service.url, API_KEY)
    rt = await RealtimeClient.open(small_service.url, API_KEY)
    try:
        await rt.ws.send("this is not json")
        err = await rt.wait_for("error", timeout_s=10)
        assert err.data["code"] == "invalid_event" and not err.data["fatal"]
        await _pong(rt)  # still served
        await rt.ws.send(json.dumps({"type": "no.such.event"}))
        await rt.ws.send(json.dumps({"type": "session.update", "sample_rate": 3}))
        await rt.ws.send(b"\x01\x02\x03")  # odd length: not 16-bit PCM
        await rt.wait_for("error", count=4, timeout_s=10)
        codes = [e.data["code"] for e in rt.of("error")]
        assert codes == ["invalid_event", "invalid_event", "invalid_event", "invalid_audio"]
        await rt.ws.send("{]")
        with pytest.raises(ConnectionError):
            await rt.wait_for("pong", count=99, timeout_s=10)
        assert rt.closed_code == 1008
        await _pong(other)
    finally:
        await asyncio.gather(rt.close(), other.close())


async def test_oversized_frame_closes_1009_others_unaffected(small_service: Service) -> None:
    other = await RealtimeClient.open(small_service.url, API_KEY)
    rt = await RealtimeClient.open(small_service.url, API_KEY)
    try:
        await rt.ws.send(b"\x00" * 8192)
        with pytest.raises(ConnectionError):
            await rt.wait_for("pong", timeout_s=10)
        assert rt.closed_code == 1009
        fatal = rt.of("error")[-1].data
        assert fatal["code"] == "frame_too_large" and fatal["fatal"]
        await _pong(other)
    finally:
        await asyncio.gather(rt.close(), other.close())


async def test_full_service_refuses_with_503_then_frees_the_place(
    small_service: Service,
) -> None:
    sessions = [await RealtimeClient.open(small_service.url, API_KEY) for _ in range(2)]
    try:
        full = await _refused(
            small_service, additional_headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert full.response.status_code == 503
        assert full.response.headers["retry-after"]
        assert json.loads(full.response.body or b"{}")["error"]["code"] == "too_many_sessions"
        for rt in sessions:
            await _pong(rt)
    finally:
        await asyncio.gather(*(rt.close() for rt in sessions))
    # the server notices the closes
    (again,) = await _open_when_free(small_service, 1)
    await _pong(again)
    await again.close()


async def test_idle_session_is_closed_4001(small_service: Service) -> None:
    rt = await RealtimeClient.open(small_service.url, API_KEY)
    try:
        with pytest.raises(ConnectionError):
            await rt.wait_for("pong", timeout_s=10)
        assert rt.closed_code == 4001
        assert rt.of("error")[-1].data["code"] == "idle_timeout"
    finally:
        await rt.close()


async def test_disconnect_mid_reply_frees_the_session(small_service: Service) -> None:
    rt = await RealtimeClient.open(small_service.url, API_KEY, max_tokens=200)
    await rt.send_event({"type": "input_text", "text": "Tell me a long story about a cat."})
    await rt.wait_for("response.text.delta", timeout_s=60)
    await rt.close()
    # both places are free again: the reply stopped with the client
    pair = await _open_when_free(small_service, 2)
    await asyncio.gather(*(p.close() for p in pair))


@pytest.fixture(scope="module")
def tight_service(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[Service]:
    """The smallest send buffer a session may fall behind by (1 MiB). uvicorn's own
    WebSocket keepalive is off here: a client that reads nothing never answers its pings, so
    uvicorn would close it after ws_ping_interval + ws_ping_timeout (20 + 20 s, as a unit runs
    it) — the other guard against such a client, which would end the session (as
    client_closed) before a loaded machine has generated the 1 MiB this test is about."""
    settings = make_settings(
        model_paths, "server", llama_server, realtime={"max_send_buffer_bytes": 1024 * 1024}
    )
    yield from run_service(
        settings, server_engines(stt_tts, settings), uvicorn_options={"ws_ping_interval": None}
    )


def _metric(svc: Service, name: str, **labels: str) -> float:
    return svc.state.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_client_that_stops_reading_is_cut_off_and_the_service_serves_on(
    tight_service: Service,
) -> None:
    """End to end over a real socket: a client asks for long spoken replies and never reads
    them. Its receive window is tiny and its library reads one message ahead, so loopback
    buffers cannot absorb the replies; the session falls 1 MiB behind and is closed as a slow
    reader (4002) while the client keeps talking, instead of buffering without end."""
    closed = "voicefleet_realtime_sessions_closed_total"
    turns = "voicefleet_realtime_turns_total"
    before = _metric(tight_service, closed, reason="slow_reader")
    gone = _metric(tight_service, closed, reason="client_closed")
    host, port = tight_service.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect((host, int(port)))
    async with connect(
        _ws(tight_service), sock=sock, additional_headers={"Authorization": f"Bearer {API_KEY}"},
        max_queue=1, compression=None, open_timeout=10, close_timeout=1,
        # no keepalive pings either way (the fixture's docstring says why)
        ping_interval=None,
    ) as ws:  # fmt: skip
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(json.dumps({"type": "session.update", "max_tokens": 256}))
        text = "Tell me a long story about a bicycle trip across the mountains."
        deadline = time.monotonic() + 240
        # one reply's audio is ~1 MB here: ask again whenever the last one is done (a new
        # turn while one runs would cancel it and drop its queued audio), never reading
        while _metric(tight_service, closed, reason="slow_reader") == before:
            assert time.monotonic() < deadline, "a reader 1 MiB behind was never cut off"
            assert _metric(tight_service, closed, reason="client_closed") == gone, "client left"
            done = _metric(tight_service, turns, outcome="done")
            with contextlib.suppress(ConnectionClosed):  # once cut off, sends may fail
                await ws.send(json.dumps({"type": "input_text", "text": text}))
            while (
                _metric(tight_service, turns, outcome="done") == done
                and _metric(tight_service, closed, reason="slow_reader") == before
            ):
                assert time.monotonic() < deadline, "a reader 1 MiB behind was never cut off"
                assert _metric(tight_service, closed, reason="client_closed") == gone, "left"
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps({"type": "ping"}))  # talking: not idle
                await asyncio.sleep(0.5)
    deadline = time.monotonic() + 30
    while _metric(tight_service, "voicefleet_realtime_sessions"):
        assert time.monotonic() < deadline, "the slow reader's session was never released"
        await asyncio.sleep(0.1)
    # the service goes on: a reading client gets its spoken reply
    rt = await RealtimeClient.open(tight_service.url, API_KEY, max_tokens=16)
    try:
        await rt.send_event({"type": "input_text", "text": "Say hello."})
        await rt.wait_for("response.done", timeout_s=60)
        assert sum(len(a) for a in rt.audio.values()) > 0
    finally:
        await rt.close()
