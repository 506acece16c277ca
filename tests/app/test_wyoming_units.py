"""Wyoming without models: the settings' exposure rule, the bounded event reader, the
announced address."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from wyoming.event import Event

from app.settings import Settings, load_settings
from app.wyoming.protocol import ProtocolError, read_event
from app.wyoming.server import _announced_host

# -- settings -------------------------------------------------------------------------------


def test_off_and_loopback_by_default() -> None:
    w = Settings().wyoming
    assert (w.enabled, w.host, w.port, w.zeroconf, w.allow_unauthenticated) == (
        False, "127.0.0.1", 10600, False, False,
    )  # fmt: skip


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "unit-1.lan"])
def test_non_loopback_needs_the_acknowledgement(host: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(wyoming={"enabled": True, "host": host})
    message = str(refused.value)
    assert f"wyoming.host={host}" in message
    assert "no authentication" in message and "allow_unauthenticated" in message
    accepted = Settings(wyoming={"enabled": True, "host": host, "allow_unauthenticated": True})
    assert accepted.wyoming.host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_nothing(host: str) -> None:
    assert Settings(wyoming={"enabled": True, "host": host}).wyoming.enabled


def test_disabled_server_binds_nothing_so_needs_no_acknowledgement() -> None:
    assert Settings(wyoming={"host": "0.0.0.0"}).wyoming.host == "0.0.0.0"


def test_http_api_key_does_not_stand_in_for_wyoming() -> None:
    """The Bearer key protects HTTP only: Wyoming clients never present it."""
    with pytest.raises(ValidationError, match="allow_unauthenticated"):
        Settings(
            server={"host": "0.0.0.0", "api_key": "k" * 16},
            wyoming={"enabled": True, "host": "0.0.0.0"},
        )


def test_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "voicefleet.yaml"
    config.write_text("wyoming:\n  enabled: true\n  port: 10999\n  zeroconf: true\n")
    monkeypatch.setenv("VOICEFLEET_WYOMING__HOST", "0.0.0.0")
    monkeypatch.setenv("VOICEFLEET_WYOMING__ALLOW_UNAUTHENTICATED", "true")
    w = load_settings(config).wyoming
    assert (w.enabled, w.port, w.zeroconf, w.host, w.allow_unauthenticated) == (
        True, 10999, True, "0.0.0.0", True,
    )  # fmt: skip


def test_reply_length_within_the_llm_cap() -> None:
    with pytest.raises(ValidationError, match=r"wyoming\.max_tokens"):
        Settings(wyoming={"max_tokens": 1000})
    assert Settings(wyoming={"max_tokens": 64}).wyoming.max_tokens == 64


def test_unknown_wyoming_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(wyoming={"enable": True})


# -- the event reader -----------------------------------------------------------------------


async def _read(data: bytes, limit: int = 4096, eof: bool = True) -> Event | None:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return await read_event(reader, limit)


def _frame(header: dict[str, object], data: bytes = b"", payload: bytes = b"") -> bytes:
    return json.dumps(header).encode() + b"\n" + data + payload


async def test_reads_header_data_and_payload() -> None:
    data = json.dumps({"width": 2, "channels": 1}).encode()
    raw = _frame(
        {"type": "audio-chunk", "data": {"rate": 16000}, "data_length": len(data),
         "payload_length": 4},
        data, b"\x01\x02\x03\x04",
    )  # fmt: skip
    event = await _read(raw)
    assert event == Event(
        "audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, b"\x01\x02\x03\x04"
    )


async def test_clean_end_of_stream_is_none() -> None:
    assert await _read(b"") is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"type": "describe"', "truncated"),
        (b"not json\n", "invalid_json"),
        (b"\xff\xfe\n", "invalid_json"),
        (b"[1, 2]\n", "bad_header"),
        (b'{"type": 5}\n', "bad_header"),
        (b'{"type": "x", "data": [1]}\n', "bad_header"),
        (b'{"type": "x", "data_length": "12"}\n', "bad_header"),
        (b'{"type": "x", "payload_length": true}\n', "bad_header"),
        (b'{"type": "x", "payload_length": -1}\n', "bad_header"),
        (b'{"type": "x", "payload_length": 100000}\n', "event_too_large"),
        (b'{"type": "x", "data_length": 10}\n{"a": 1}', "truncated"),
        (b'{"type": "x", "data_length": 3}\n[1]', "bad_header"),
        (b'{"type": "x", "payload_length": 10}\nabc', "truncated"),
        (b"x" * 5000, "event_too_large"),
    ],
)
async def test_malformed_events_are_protocol_errors(raw: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        await _read(raw)
    assert refused.value.code == code, refused.value


# -- mDNS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "announced"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("192.168.1.20", "192.168.1.20"),
        ("0.0.0.0", None),  # the interface that routes to the mDNS group
        ("::", None),
        ("unit-1.lan", None),
    ],
)
def test_announced_address(host: str, announced: str | None) -> None:
    assert _announced_host(host) == announced


async def test_zeroconf_announces_the_server() -> None:
    """The mDNS record Home Assistant discovers: _wyoming._tcp with the server's port."""
    from zeroconf.asyncio import AsyncZeroconf

    from app.state import ServiceState
    from app.wyoming.server import SERVICE_TYPE, WyomingServer
    from tests.conftest import free_port

    name = f"voicefleet-test-{free_port()}"
    settings = Settings(
        wyoming={"enabled": True, "port": free_port(), "zeroconf": True, "zeroconf_name": name}
    )
    server = WyomingServer(ServiceState(settings))
    await server.start()
    browser = AsyncZeroconf()
    try:
        assert server.announced
        info = await browser.async_get_service_info(
            SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", timeout=5000
        )
        assert info is not None, "no mDNS answer"
        assert info.port == settings.wyoming.port
        assert info.parsed_addresses() == ["127.0.0.1"]
    finally:
        await browser.async_close()
        await server.stop()
    assert not server.announced
