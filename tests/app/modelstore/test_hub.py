"""The hub path for real: huggingface_hub 2.4 against a local server speaking its endpoints
(HF_ENDPOINT), including bodies that arrive corrupted or cut short."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from .conftest import entry, make_gguf, write_catalog
from .fakehub import FakeHub

REPO = "acme/tiny-llm-GGUF"
GGUF = "tiny-llm-Q4_K_M.gguf"


def _hub_entry(hub: FakeHub, data: bytes, name: str = "tiny-llm") -> dict[str, object]:
    repo = hub.add_repo(REPO, {GGUF: data, "README.md": b"# tiny\n"})
    return entry(name, "llm", {"type": "hub", "repo": REPO, "revision": repo.commit}, {GGUF: data})


def test_fetch_via_hf_endpoint_then_idempotent_without_network(
    hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # no endpoint in the catalog: the env wins
    catalog = write_catalog(tmp_path / "models.yml", [_hub_entry(hub, gguf_bytes)])
    store = tmp_path / "store"
    rc, out, err = run_cli("fetch", "--catalog", catalog, "--store", store, "--json")
    assert rc == 0, err
    sha = hashlib.sha256(gguf_bytes).hexdigest()
    assert out["installed"]["llm"]["sha256"] == sha
    installed = store / "current" / "llm" / GGUF
    assert installed.read_bytes() == gguf_bytes
    assert os.readlink(store / "current" / "llm") == f"../{sha}"
    commit = hub.repos[REPO].commit
    assert any(m == "GET" and f"/resolve/{commit}/{GGUF}" in p for m, p, _ in hub.log)

    requests_before = len(hub.log)
    rc, out, err = run_cli("fetch", "--catalog", catalog, "--store", store, "--json")
    assert rc == 0, err
    assert out["changed"] is False
    assert out["installed"]["llm"]["hashed_bytes"] == 0  # stamp: nothing re-read
    assert len(hub.log) == requests_before  # and nothing asked of the hub


def test_pin_locks_commit_and_lfs_sha256_keeping_comments(
    hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    config = b'{"arch": "tiny"}\n'  # small git file: no LFS sha256 in metadata -> hashed
    repo = hub.add_repo(REPO, {GGUF: gguf_bytes, "config.json": config})
    text = f"""---
# production catalog (comment kept by pin)
models_catalog:
  - name: tiny-llm
    role: llm
    source:
      type: hub
      repo: {REPO}
      revision: main  # to be pinned
      endpoint: {hub.url}
    files:
      - name: {GGUF}
        sha256: UNPINNED
      - name: config.json
"""
    catalog = tmp_path / "models.yml"
    catalog.write_text(text)
    rc, _, err = run_cli("fetch", "--catalog", catalog, "--store", tmp_path / "s")
    assert rc == 1
    assert "unpinned" in err and "voicefleet models pin" in err

    rc, _, err = run_cli("pin", "--catalog", catalog)
    assert rc == 0, err
    written = catalog.read_text()
    assert "# production catalog (comment kept by pin)" in written
    doc = yaml.safe_load(written)["models_catalog"][0]
    assert doc["source"]["revision"] == repo.commit
    assert doc["files"][0]["sha256"] == hashlib.sha256(gguf_bytes).hexdigest()
    assert doc["files"][0]["size"] == len(gguf_bytes)
    assert doc["files"][1]["sha256"] == hashlib.sha256(config).hexdigest()
    assert any(m == "POST" and "/paths-info/" in p for m, p, _ in hub.log)

    rc, _, err = run_cli("fetch", "--catalog", catalog, "--store", tmp_path / "s", "--json")
    assert rc == 0, err
    assert (tmp_path / "s" / "current" / "llm" / "config.json").read_bytes() == config


def test_pin_unknown_revision_fails_clearly(hub: FakeHub, tmp_path: Path, run_cli) -> None:
    hub.add_repo(REPO, {GGUF: make_gguf(1024)})
    catalog = write_catalog(
        tmp_path / "m.yml",
        [
            {
                "name": "x",
                "role": "llm",
                "files": [{"name": GGUF}],
                "source": {"type": "hub", "repo": REPO, "revision": "v9", "endpoint": hub.url},
            }
        ],
    )
    rc, _, err = run_cli("pin", "--catalog", catalog)
    assert rc == 1
    assert "RevisionNotFound" in err and REPO in err


@pytest.mark.parametrize("fault", ["corrupt", "truncate"])
def test_bad_hub_body_fails_and_previous_model_still_served(
    fault: str, hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    store = tmp_path / "store"
    old = write_catalog(tmp_path / "old.yml", [_hub_entry(hub, gguf_bytes)])
    rc, _, err = run_cli("fetch", "--catalog", old, "--store", store, "--hf-endpoint", hub.url)
    assert rc == 0, err
    old_sha = hashlib.sha256(gguf_bytes).hexdigest()

    new_bytes = make_gguf(600 * 1024, seed=1)
    new = write_catalog(tmp_path / "new.yml", [_hub_entry(hub, new_bytes)])
    hub.fault = fault
    rc, _, err = run_cli(
        "fetch",
        "--catalog",
        new,
        "--store",
        store,
        "--hf-endpoint",
        hub.url,
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--timeout",
        "5",
    )
    assert rc == 1
    new_sha = hashlib.sha256(new_bytes).hexdigest()
    assert GGUF in err and new_sha in err  # names the file and the expected checksum
    if fault == "corrupt":  # a full-length body: we hashed it, so the actual sha is shown
        assert "sha256 mismatch" in err and "actual " in err
    else:  # cut short: huggingface_hub's size check or our size check says so
        assert "size" in err
    assert os.readlink(store / "current" / "llm") == f"../{old_sha}"
    assert (store / "current" / "llm" / GGUF).read_bytes() == gguf_bytes
    assert not (store / new_sha).exists()
    staged = store / ".staging" / new_sha / GGUF
    assert not staged.exists()  # corrupt bytes are never kept to resume from


def test_hub_unreachable_and_timeouts_fail_clearly(
    hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    catalog = write_catalog(tmp_path / "m.yml", [_hub_entry(hub, gguf_bytes)])
    hub.stop()  # the port now refuses connections
    rc, _, err = run_cli(
        "fetch",
        "--catalog",
        catalog,
        "--store",
        tmp_path / "s",
        "--hf-endpoint",
        hub.url,
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--timeout",
        "1",
    )
    assert rc == 1
    assert GGUF in err and "giving up after 2 attempts" in err
    assert not (tmp_path / "s" / "current" / "llm").exists()


def test_transient_503_is_retried_with_backoff(
    hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    catalog = write_catalog(tmp_path / "m.yml", [_hub_entry(hub, gguf_bytes)])
    hub.fail_first = 2
    rc, out, err = run_cli(
        "fetch",
        "--catalog",
        catalog,
        "--store",
        tmp_path / "s",
        "--hf-endpoint",
        hub.url,
        "--retries",
        "4",
        "--backoff",
        "0.01",
        "--json",
    )
    assert rc == 0, err
    assert out["installed"]["llm"]["action"] == "installed"
    assert len(hub.body_gets()) >= 3
