"""The voice service as the voice_service role leaves it (after side_effect's bad changes):
an active hardened unit, /readyz 200, and through the official openai client a chat answer and
a real transcription of the unit's own speech, on the settings of the recorded release."""

import io
import json
import os
import sys
import urllib.request
import wave
from pathlib import Path

import openai
import pytest
import testinfra.utils.ansible_runner
import yaml

sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
from tests.fleet.runner import hostvars, release, tunnel

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SIM = yaml.safe_load((ROOT / "inventory/sim/group_vars/all/llamacpp.yml").read_text())
SPOKEN = "What will the weather be like tomorrow morning?"


@pytest.fixture(scope="module")
def url(host):
    """The service's loopback port on the unit, forwarded to the controller (it waits for
    /readyz 200)."""
    with tunnel(host.backend.get_hostname(), 8000) as forwarded:
        yield forwarded


@pytest.fixture(scope="module")
def client(host, url):
    key = hostvars()[host.backend.get_hostname()]["voice_service_api_key"]
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def served(client, kind):
    return next(m.id for m in client.models.list() if (m.model_extra or {}).get("kind") == kind)


def test_unit_is_active_hardened_and_unprivileged(host):
    svc = host.service("voicefleet")
    assert svc.is_running and svc.is_enabled
    props = dict(
        line.split("=", 1)
        for line in host.check_output("systemctl show voicefleet").splitlines()
        if "=" in line
    )
    assert props["ActiveState"] == "active" and props["User"] == "voicefleet"
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    assert host.check_output(f"ps -o user= -p {props['MainPID']}").strip() == "voicefleet"
    # the keys live in the EnvironmentFile (0640 root:voicefleet), not on the command line
    key = hostvars()[host.backend.get_hostname()]["voice_service_api_key"]
    assert key not in host.file(f"/proc/{props['MainPID']}/cmdline").content_string
    env = host.file("/etc/voicefleet/voicefleet.env")
    assert (env.user, env.group, env.mode) == ("root", "voicefleet", 0o640)
    assert host.socket("tcp://127.0.0.1:8000").is_listening


def test_readyz_and_the_key(url, client):
    with urllib.request.urlopen(f"{url}/readyz", timeout=10) as resp:
        ready = json.load(resp)
    assert resp.status == 200 and ready["status"] == "ready", ready
    assert all(ready["checks"].values()) and {"llm", "stt", "tts"} <= set(ready["checks"])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong-key-wrong-key",
                      max_retries=0).models.list()  # fmt: skip


def test_chat_answer_through_the_service(client):
    reply = client.chat.completions.create(
        model=served(client, "llm"),
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
    )
    assert reply.choices[0].message.content.strip()
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_real_transcription_of_the_units_own_speech(client):
    audio = client.audio.speech.create(
        model=served(client, "tts"), voice="alloy", input=SPOKEN, response_format="wav"
    ).content
    with wave.open(io.BytesIO(audio)) as w:
        seconds = len(w.readframes(w.getnframes())) / 2 / w.getframerate()
    assert 1.0 < seconds < 10.0
    text = client.audio.transcriptions.create(
        model=served(client, "stt"), file=("speech.wav", audio, "audio/wav")
    ).text.lower()
    for word in ("weather", "tomorrow", "morning"):
        assert word in text, text


def test_settings_are_the_recorded_releases_and_follow_llamacpp(host):
    """After the bad change and the rollback entry point: the file is the release's snapshot
    (byte for byte), rendered from the same group_vars as llama-server."""
    name = host.backend.get_hostname()
    rel = release(name)["release"]
    path = "/etc/voicefleet/voicefleet.yaml"
    assert host.file(path).sha256sum == rel["components"]["config"][path]
    settings = yaml.safe_load(host.file(path).content_string)
    assert "max_inflight" not in json.dumps(settings)
    assert settings["llm"]["server_url"] == "http://127.0.0.1:8080"
    assert settings["llm"]["ctx_per_slot"] == SIM["llamacpp_ctx_per_slot"]
    assert settings["llm"]["parallel"] == SIM["llamacpp_parallel"]
