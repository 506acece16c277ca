"""An upload over limits.max_upload_bytes is refused on its Content-Length with a 413 JSON
error that each kind of client actually receives — the openai SDK and urllib send the whole
body before they read, curl sends `Expect: 100-continue` and waits — and the service goes
on serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest

from tests.app.conftest import LLM_NAME, Service
from tests.conftest import API_KEY

SIZES_MB = [20, 60]


@pytest.fixture(scope="module", params=SIZES_MB, ids=lambda mb: f"{mb}MB")
def big_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / f"big-{request.param}.wav"
    with path.open("wb") as f:
        f.truncate(request.param * 1024 * 1024)
    return path


def _assert_413(status: int, body: bytes, svc: Service) -> None:
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "upload_too_large"
    assert str(svc.settings.limits.max_upload_bytes) in error["message"]
    # and the next request is served
    with svc.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": LLM_NAME, "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 2},
        )  # fmt: skip
        assert r.status_code == 200, r.text


def test_openai_sdk_receives_the_413(server_service: Service, big_file: Path) -> None:
    client = openai.OpenAI(base_url=f"{server_service.url}/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as err, big_file.open("rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f)
    _assert_413(err.value.status_code, err.value.response.content, server_service)


def test_urllib_receives_the_413(server_service: Service, big_file: Path) -> None:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    body = head + big_file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{server_service.url}/v1/audio/transcriptions",
        data=body,
        headers={
            **server_service.headers,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    _assert_413(err.value.code, err.value.read(), server_service)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_receives_the_413(server_service: Service, big_file: Path) -> None:
    auth = f"Authorization: {server_service.headers['Authorization']}"
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "-H", auth,
         "-F", "model=whisper-1", "-F", f"file=@{big_file}",
         f"{server_service.url}/v1/audio/transcriptions"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    body, _, status = out.stdout.rpartition(b"\n")
    _assert_413(int(status), body, server_service)
