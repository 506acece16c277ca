"""What a unit ends up with: the catalog's bytes, behind stable links, readable by the service
user, with the previous LLM kept after upgrade + rollback, and re-runs that hash nothing."""

import json
import os
from pathlib import Path

import testinfra.utils.ansible_runner
import yaml

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
CATALOG = yaml.safe_load((ROOT / "inventory/sim/group_vars/all/models.yml").read_text())
ENTRIES = {e["role"]: e for e in CATALOG["models_catalog"]}
STORE = "/opt/voicefleet/models"
TOOL = "/opt/voicefleet/lib/voicefleet-models.pyz"


def test_current_links_point_at_the_catalog_bundles(host):
    for role, e in ENTRIES.items():
        link = host.file(f"{STORE}/current/{role}")
        assert link.is_symlink
        assert link.linked_to == f"{STORE}/{e['files'][0]['sha256']}"
        assert host.check_output(f"readlink {STORE}/current/{role}").startswith("../")


def test_files_are_byte_for_byte_the_catalog(host):
    for role, e in ENTRIES.items():
        for f in e["files"]:
            path = f"{STORE}/current/{role}/{f['name']}"
            out = host.check_output(f"sha256sum {path}")
            assert out.split()[0] == f["sha256"], path
            assert host.file(path).size == f["size"]


def test_permissions_readable_not_writable_by_service(host):
    for role, e in ENTRIES.items():
        bundle = host.file(f"{STORE}/{e['files'][0]['sha256']}")
        assert bundle.user == "root" and bundle.mode == 0o755
        for f in e["files"]:
            fh = host.file(f"{bundle.path}/{f['name']}")
            assert fh.user == "root" and fh.mode == 0o644


def test_upgrade_kept_previous_and_rollback_restored_it(host):
    listing = json.loads(host.check_output(f"python3 {TOOL} list --json --store {STORE}"))
    llm = listing["llm"]
    assert llm["name"] == "smollm2-135m-instruct-q4_1"
    names = [v["name"] for v in llm["versions"]]
    assert "tiny-v2" in names and all(v["present"] for v in llm["versions"])


def test_rerun_reads_no_model_bytes(host):
    out = host.check_output(
        f"python3 {TOOL} fetch --json --catalog /opt/voicefleet/lib/models-catalog.json "
        f"--store {STORE} --name faster-whisper-tiny.en --name piper-en_US-joe-medium"
    )
    result = json.loads(out)
    assert result["changed"] is False
    assert all(v["hashed_bytes"] == 0 for v in result["installed"].values())


def test_no_leftovers(host):
    assert not host.file(f"{STORE}/.incoming").exists
    staging = host.check_output(f"find {STORE}/.staging -type f | wc -l")
    assert staging == "0"
