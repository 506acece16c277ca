"""voicefleet-bundle (roles/offline/files/voicefleet_bundle.py) without a unit: a bundle packed
and signed with a real OpenSSH key verifies against the allowed signers; one byte changed, a key
the unit does not trust, or a bundle for another unit is refused before anything is written
(the unit's state directory is not even created). The full apply on a unit: tests/offline/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[3] / "roles" / "offline" / "files" / "voicefleet_bundle.py"


def _key(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
                   check=True)  # fmt: skip
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A signed bundle for unit-a, a unit enrolled as unit-a trusting the key, its state dir."""
    conf, state, stage = tmp_path / "conf", tmp_path / "state", tmp_path / "stage"
    conf.mkdir()
    (stage / "collections").mkdir(parents=True)
    (stage / "current").mkdir()
    (stage / "current" / "llm").symlink_to("../" + "0" * 64)
    (stage / "ansible.cfg").write_text("[defaults]\n")
    (stage / "apply-vars.json").write_text("{}\n")
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text("all: {hosts: {unit-a: {}}}\n")
    pub = _key(tmp_path / "signer")
    (conf / "allowed_signers").write_text(
        f'voicefleet-bundle namespaces="voicefleet-bundle" {pub}\n'
    )
    (conf / "unit.json").write_text(json.dumps({"unit": "unit-a"}))
    plan = {"id": "t1-bundle", "units": ["unit-a"], "playbook": "voicefleet.fleet.site",
            "stage": str(stage), "inventories": [str(tmp_path / "inv" / "hosts.yml")],
            "wheelhouses": {}, "artifacts": [], "models": []}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    packed = _tool(tmp_path, "pack", "--plan", str(tmp_path / "plan.json"), "--key",
                   str(tmp_path / "signer"), "--out", str(tmp_path / "out"))  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    out = json.loads(packed.stdout)
    return {"bundle": Path(out["bundle"]), "conf": conf, "state": state, "tmp": tmp_path}


def _tool(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOICEFLEET_OFFLINE_CONF": str(tmp / "conf"),
           "VOICEFLEET_OFFLINE_STATE": str(tmp / "state")}  # fmt: skip
    return subprocess.run([sys.executable, str(TOOL), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_a_signed_bundle_verifies_and_starts_with_its_manifest(site: dict[str, Path]) -> None:
    done = _tool(site["tmp"], "verify", str(site["bundle"]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["signer"] == "voicefleet-bundle"
    with tarfile.open(site["bundle"]) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert tar.getmember("home/controller-models/store/current/llm").issym()
    assert names[0] == "manifest.json" and "inventory/0/hosts.yml" in names
    assert manifest["units"] == ["unit-a"] and manifest["inventories"] == ["inventory/0/hosts.yml"]


def test_one_byte_changed_is_refused_before_anything_is_written(site: dict[str, Path]) -> None:
    data = bytearray(site["bundle"].read_bytes())
    data[len(data) // 3] ^= 0x01
    site["bundle"].write_bytes(bytes(data))
    done = _tool(site["tmp"], "apply", str(site["bundle"]))
    assert done.returncode == 3
    assert "refused: bad signature" in done.stderr and "nothing on this unit" in done.stderr
    assert not site["state"].exists()


def test_a_key_the_unit_does_not_trust_is_refused(site: dict[str, Path]) -> None:
    other = _key(site["tmp"] / "other")
    (site["conf"] / "allowed_signers").write_text(
        f'voicefleet-bundle namespaces="voicefleet-bundle" {other}\n'
    )
    done = _tool(site["tmp"], "apply", str(site["bundle"]))
    assert done.returncode == 3 and "not in" in done.stderr, done.stderr
    assert not site["state"].exists()


def test_a_bundle_for_another_unit_is_refused(site: dict[str, Path]) -> None:
    (site["conf"] / "unit.json").write_text(json.dumps({"unit": "unit-b"}))
    done = _tool(site["tmp"], "apply", str(site["bundle"]))
    assert done.returncode == 3 and "not this unit (unit-b)" in done.stderr, done.stderr
    assert not site["state"].exists()
