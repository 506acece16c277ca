"""llama-server as deployed by the llamacpp role: unit, user, socket, health, context size."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SIM = yaml.safe_load((ROOT / "inventory/sim/group_vars/all/llamacpp.yml").read_text())
CTX_PER_SLOT = SIM["llamacpp_ctx_per_slot"]
PARALLEL = SIM["llamacpp_parallel"]
API_KEY = SIM["llamacpp_api_key"]
INSTALL = "/opt/voicefleet/llama.cpp"


def http(host, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    """Request llama-server from inside the host (it listens on the host's loopback only)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body) if body is not None else None
    script = (
        "import urllib.request, urllib.error\n"
        f"data = {data!r}\n"
        f"req = urllib.request.Request('http://127.0.0.1:8080{path}', "
        f"data=data.encode() if data is not None else None, headers={headers!r})\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=120)\n"
        "    print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode() or '{}')\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)}")
    status, _, payload = out.partition("\n")
    return int(status), json.loads(payload or "{}")


def unit_props(host) -> dict[str, str]:
    out = host.check_output("systemctl show llama-server")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_runs_as_dedicated_unprivileged_user(host):
    user = host.user("llama")
    assert user.exists and user.uid < 1000 and user.shell == "/usr/sbin/nologin"
    svc = host.service("llama-server")
    assert svc.is_running and svc.is_enabled
    pid = unit_props(host)["MainPID"]
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "llama"


def test_unit_properties(host):
    props = unit_props(host)
    assert props["User"] == "llama"
    assert props["Restart"] == "on-failure"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    # CapabilityBoundingSet= (empty): the process holds no capability at all.
    status = host.file(f"/proc/{props['MainPID']}/status").content_string
    caps = dict(line.split(":\t", 1) for line in status.splitlines() if line.startswith("Cap"))
    assert int(caps["CapBnd"], 16) == 0 and int(caps["CapEff"], 16) == 0
    assert props["EnvironmentFiles"].startswith("/etc/llama-server/llama-server.env")


def test_args_size_context_per_slot_and_keep_the_key_off_the_command_line(host):
    pid = unit_props(host)["MainPID"]
    argv = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert argv[0] == f"{INSTALL}/current/bin/llama-server"
    assert argv[argv.index("-c") + 1] == str(CTX_PER_SLOT * PARALLEL)
    assert argv[argv.index("-np") + 1] == str(PARALLEL)
    assert argv[argv.index("--flash-attn") + 1] == "on"
    assert {"--metrics", "--cont-batching", "--no-kv-unified"} <= set(argv)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert not any(API_KEY in a for a in argv) and "--api-key" not in argv
    env = host.file("/etc/llama-server/llama-server.env")
    assert env.user == "root" and env.group == "llama" and env.mode == 0o640


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening
    pid = unit_props(host)["MainPID"]
    listening = host.check_output(f"ss -Hltnp | grep 'pid={pid},' | awk '{{print $4}}'").split()
    assert listening == ["127.0.0.1:8080"]


def test_health_and_api_key(host):
    assert http(host, "/health")[0] == 200
    assert http(host, "/v1/models")[0] == 401
    assert http(host, "/v1/models", key=API_KEY)[0] == 200


def test_prompt_longer_than_256_tokens_is_accepted(host):
    # The field config (-c 2048 -np 8) gave each slot 256 tokens and refused this with 400.
    prompt = " ".join(f"item {i} of the list," for i in range(120))
    status, tokens = http(host, "/tokenize", {"content": prompt}, key=API_KEY)
    assert status == 200 and len(tokens["tokens"]) > 256
    status, props = http(host, "/props", key=API_KEY)
    assert props["default_generation_settings"]["n_ctx"] == CTX_PER_SLOT
    status, reply = http(
        host, "/completion", {"prompt": prompt, "n_predict": 8, "cache_prompt": False}, key=API_KEY
    )
    assert status == 200, reply
    assert reply["tokens_evaluated"] > 256


def test_built_once_on_the_first_unit_and_pushed(host):
    manifest = json.loads(host.file(f"{INSTALL}/current/manifest.json").content_string)
    assert manifest["built_on"] == "llcpp-1"
    assert host.run(f"cd {INSTALL}/current && sha256sum --check --strict SHA256SUMS").rc == 0
    builds = host.file("/var/cache/voicefleet/llama.cpp-build")
    if host.backend.get_hostname() == "llcpp-1":
        assert builds.is_directory
    else:
        # The other unit never built: no build tree, not even a compiler.
        assert not builds.exists
        assert not host.exists("cmake")


@pytest.mark.parametrize("link", ["current", "previous"])
def test_versioned_install_keeps_the_previous_build(host, link):
    # After side_effect (new flag, then rollback): current is the first build again and
    # previous is the rebuilt one; both complete.
    target = host.file(f"{INSTALL}/{link}")
    assert target.is_symlink and target.linked_to.startswith(f"{INSTALL}/builds/")
    assert host.file(f"{INSTALL}/{link}/bin/llama-server").mode & 0o111
