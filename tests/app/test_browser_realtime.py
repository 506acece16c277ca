"""The talk page in headless Chromium (Debian package) with a fake microphone playing a WAV:
the page connects, streams the microphone, shows the transcript, the reply and the timings,
and plays the reply. Driven over the Chrome DevTools protocol (websockets).

Set VOICEFLEET_SCREENSHOT=docs/realtime-page.png to keep the screenshot.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.bench.pcm import silence, trim_silence, wav_pcm
from tests.app.conftest import API_KEY, Service
from tests.conftest import stop_process

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class DevTools:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    async def js(self, expression: str, gesture: bool = False) -> Any:
        result = await self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
            userGesture=gesture,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture
def mic_wav(speech_wav: bytes, tmp_path: Path) -> Path:
    pcm, rate = wav_pcm(speech_wav)
    audio = np.concatenate([silence(rate, 1.5), trim_silence(pcm, rate), silence(rate, 6.0)])
    path = tmp_path / "mic.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.astype("<i2").tobytes())
    return path


@pytest.fixture
def chromium(mic_wav: Path, tmp_path: Path) -> Iterator[str]:
    """A headless Chromium with the WAV as its microphone; yields the DevTools HTTP URL."""
    if not Path(CHROMIUM).is_file():
        pytest.fail("chromium missing: apt-get install chromium (scripts/setup.sh lists it)")
    profile = tmp_path / "profile"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", "--window-size=1200,800", "about:blank",
    ]  # fmt: skip
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start: {(tmp_path / 'chromium.log').read_text()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        stop_process(proc)
        log.close()


async def test_page_talks_through_the_fake_microphone(
    server_service: Service, chromium: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as c:
        page = (await c.put(f"{chromium}/json/new?about:blank")).json()
    async with connect(page["webSocketDebuggerUrl"], max_size=32 * 2**20) as ws:
        dt = DevTools(ws)
        await dt.call("Page.enable")
        await dt.call("Page.navigate", url=f"{server_service.url}/realtime/#key={API_KEY}")
        for _ in range(100):
            if await dt.js("document.readyState") == "complete" and await dt.js("!!window.vf"):
                break
            await asyncio.sleep(0.1)
        await dt.js("document.getElementById('start').click()", gesture=True)
        state: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = await dt.js(
                "({t: vf.transcripts, r: vf.replies, a: vf.audioBytes, n: vf.timings.length,"
                " s: vf.state, status: document.getElementById('status').textContent,"
                " e: vf.events.filter(e => e.type === 'error')})"
            )
            if state["n"] >= 1 and state["a"] > 0:
                break
            await asyncio.sleep(0.25)
        assert state.get("s") == "open", state
        assert any("weather" in t.lower() for t in state["t"]), state
        assert any(r.strip() for r in state["r"].values()), state
        assert state["a"] > 10_000 and not state["e"], state
        # what the user sees: both sides of the conversation and the timings
        log_text = await dt.js("document.getElementById('log').innerText")
        assert "weather" in log_text.lower()
        first_audio = await dt.js(
            "document.querySelector('[data-k=vad_end_to_first_audio_ms]').textContent"
        )
        assert first_audio.endswith(" ms"), first_audio
        await asyncio.sleep(1.0)  # let the page settle for the screenshot
        shot = await dt.call("Page.captureScreenshot", format="png")
        await dt.js("document.getElementById('stop').click()")
    png = tmp_path / "realtime-page.png"
    import base64

    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.stat().st_size > 10_000
    keep = os.environ.get("VOICEFLEET_SCREENSHOT")
    if keep:
        shutil.copyfile(png, keep)
