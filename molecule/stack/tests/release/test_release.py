"""After side_effect (release B: a new LLM version, a llama-server flag, a service setting;
then playbooks/rollback.yml): every part of the unit is release A's again, B is previous, the
unit serves; on this real host the voicefleet_release module in check mode says
what a rollback to B would restore and make current, and changes nothing."""

import json
import os
import sys

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
from tests.fleet.runner import release, serves

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
MODULE = "voicefleet.fleet.voicefleet_release"
SETTINGS = "/etc/voicefleet/voicefleet.yaml"
LLAMA_UNIT = "/etc/systemd/system/llama-server.service"
CONFIG = [SETTINGS, "/etc/voicefleet/voicefleet.env", "/etc/systemd/system/voicefleet.service",
          "/etc/llama-server/llama-server.env", LLAMA_UNIT]  # fmt: skip


@pytest.fixture(scope="module")
def releases(host):
    now = release(host.backend.get_hostname())
    b = host.file(f"/opt/voicefleet/releases/{now['previous']}/release.json").content_string
    return now, json.loads(b)


def link(host, path):
    return os.path.basename(host.file(path).linked_to)


def test_every_part_is_release_a_again(host, releases):
    now, b = releases
    a = now["release"]["components"]
    assert now["previous"] == b["id"] != now["current"]
    # models role: the LLM bundle back; the other bundles never changed
    assert link(host, "/opt/voicefleet/models/current/llm") == a["models"]["llm"]
    assert a["models"]["llm"] != b["components"]["models"]["llm"]
    assert a["models"]["stt"] == b["components"]["models"]["stt"]
    # llamacpp role: its unit back (same build), the running server has the old flag
    assert link(host, "/opt/voicefleet/llama.cpp/current") == a["llamacpp"]["build_key"]
    assert a["llamacpp"] == b["components"]["llamacpp"]
    exec_start = host.check_output("systemctl show llama-server -p ExecStart")
    assert " -b 512 " in exec_start and " -b 256 " not in exec_start
    # voice_service role: its settings back; same app venv
    assert a["app"] == b["components"]["app"]
    for path in CONFIG:
        assert host.file(path).sha256sum == a["config"][path], path
    assert "log_level: info" in host.file(SETTINGS).content_string
    # what the running processes loaded is the release's: the model file llama-server maps
    pid = host.check_output("systemctl show -p MainPID --value llama-server")
    maps = host.check_output(f"grep -o '/opt/voicefleet/models/[0-9a-f]*/' /proc/{pid}/maps")
    assert set(maps.split()) == {f"/opt/voicefleet/models/{a['models']['llm']}/"}
    serves(host.backend.get_hostname())


def test_read_plans_a_rollback_to_b(host, releases):
    _, b = releases
    out = host.ansible(MODULE, f"action=read target=previous config_files={','.join(CONFIG)}")
    plan = out["plan"]
    assert plan["target"] == b["id"] and not out["changed"]
    assert plan["differ"]["models"] == ["llm"]
    assert not plan["differ"]["llamacpp"] and not plan["differ"]["app"]
    assert set(plan["differ"]["config"]) == {SETTINGS, LLAMA_UNIT}


def test_check_mode_restore_and_finish_change_nothing(host, releases):
    now, b = releases
    before = {p: host.file(p).sha256sum for p in CONFIG}
    # (testinfra's ad-hoc run returns no `diff`: side_effect asserts record's --diff)
    out = host.ansible(MODULE, "action=restore target=previous", check=True)
    assert out["changed"] and set(out["result"]["restored"]) == {SETTINGS, LLAMA_UNIT}
    out = host.ansible(MODULE, "action=finish target=previous", check=True)
    assert out["changed"] and out["result"]["current"] == b["id"]
    assert out["result"]["previous"] == now["current"]
    # nothing was written
    assert {p: host.file(p).sha256sum for p in CONFIG} == before
    assert release(host.backend.get_hostname())["current"] == now["current"]
