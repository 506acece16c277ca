"""Store behaviour: stamps spare re-hashing until a file changes, upgrades keep the previous
bundle, rollback restores it, pruning keeps the configured count, hand-placed stores converge."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from app.modelstore.catalog import CatalogError, parse_catalog
from app.modelstore.store import Store
from app.modelstore.verify import StampBook, VerifyError, verify_file

from .conftest import entry, make_gguf, write_catalog

GGUF = "model.gguf"


def _version(tmp_path: Path, n: int, run_cli, store: Path, keep: int = 2) -> tuple[str, bytes]:
    data = make_gguf(300 * 1024, seed=100 + n)
    src = tmp_path / f"src{n}"
    src.mkdir(exist_ok=True)
    (src / GGUF).write_bytes(data)
    cat = write_catalog(
        tmp_path / f"v{n}.yml",
        [entry(f"llm-v{n}", "llm", {"type": "local", "dir": str(src)}, {GGUF: data})],
    )
    rc, _, err = run_cli("fetch", "--catalog", cat, "--store", store, "--keep", str(keep))
    assert rc == 0, err
    return hashlib.sha256(data).hexdigest(), data


def test_stamp_skips_hashing_until_the_file_changes(tmp_path: Path, gguf_bytes: bytes) -> None:
    f = tmp_path / GGUF
    f.write_bytes(gguf_bytes)
    sha = hashlib.sha256(gguf_bytes).hexdigest()
    first = verify_file(f, sha, len(gguf_bytes))
    assert first.hashed
    again = verify_file(f, sha, len(gguf_bytes), first.stamp)
    assert not again.hashed
    # same size, one byte changed, mtime put back: ctime still gives it away
    st = f.stat()
    with open(f, "r+b") as fh:
        fh.seek(100)
        fh.write(b"X")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(VerifyError, match="sha256 mismatch"):
        verify_file(f, sha, len(gguf_bytes), first.stamp)


def test_upgrade_keeps_previous_rollback_restores_prune_keeps_count(
    tmp_path: Path, run_cli
) -> None:
    store = tmp_path / "store"
    sha1, data1 = _version(tmp_path, 1, run_cli, store)
    sha2, _ = _version(tmp_path, 2, run_cli, store)
    assert os.readlink(store / "current" / "llm") == f"../{sha2}"
    assert (store / sha1 / GGUF).read_bytes() == data1  # previous kept for rollback

    rc, out, err = run_cli("rollback", "--store", store, "--role", "llm", "--json")
    assert rc == 0, err
    assert out["rolled_back"]["llm"] == {"from": sha2, "to": sha1}
    assert (store / "current" / "llm" / GGUF).read_bytes() == data1
    rc, out, _ = run_cli("list", "--store", store, "--json")
    assert out["llm"]["current"] == sha1

    sha3, _ = _version(tmp_path, 3, run_cli, store)  # keep=2: v3 + the one before it (v1)
    present = {p.name for p in store.iterdir() if not p.name.startswith(".")}
    assert present == {"current", sha1, sha3}
    assert not (store / ".verified" / f"{sha2}.json").exists()


def test_rollback_refuses_a_corrupted_previous_bundle(tmp_path: Path, run_cli) -> None:
    store = tmp_path / "store"
    sha1, _ = _version(tmp_path, 1, run_cli, store)
    sha2, _ = _version(tmp_path, 2, run_cli, store)
    with open(store / sha1 / GGUF, "r+b") as fh:
        fh.seek(50)
        fh.write(b"\xff")
    rc, _, err = run_cli("rollback", "--store", store, "--role", "llm")
    assert rc == 1 and "sha256 mismatch" in err and sha1 in err
    assert os.readlink(store / "current" / "llm") == f"../{sha2}"


def test_nothing_to_roll_back_to(tmp_path: Path, run_cli) -> None:
    store = tmp_path / "store"
    _version(tmp_path, 1, run_cli, store)
    rc, _, err = run_cli("rollback", "--store", store, "--role", "llm")
    assert rc == 1 and "no earlier llm model" in err


def test_hand_placed_store_converges_and_bad_copy_is_replaced(
    tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    sha = hashlib.sha256(gguf_bytes).hexdigest()
    store = tmp_path / "store"
    (store / sha).mkdir(parents=True)
    (store / sha / GGUF).write_bytes(gguf_bytes)
    (store / "current").mkdir()
    os.symlink(f"../{sha}", store / "current" / "llm")
    src = tmp_path / "src"
    src.mkdir()
    (src / GGUF).write_bytes(gguf_bytes)
    cat = write_catalog(
        tmp_path / "c.yml",
        [entry("llm", "llm", {"type": "local", "dir": str(src)}, {GGUF: gguf_bytes})],
    )
    rc, out, _ = run_cli("fetch", "--catalog", cat, "--store", store, "--json")
    assert out["installed"]["llm"]["action"] == "present"
    assert out["installed"]["llm"]["hashed_bytes"] == len(gguf_bytes)  # hashed once
    rc, out, _ = run_cli("fetch", "--catalog", cat, "--store", store, "--json")
    assert out["installed"]["llm"]["hashed_bytes"] == 0 and out["changed"] is False

    (store / sha / GGUF).write_bytes(gguf_bytes[:-10])  # damaged in place
    rc, out, err = run_cli("fetch", "--catalog", cat, "--store", store, "--json")
    assert rc == 0, err
    assert out["installed"]["llm"]["action"] == "replaced"
    assert (store / "current" / "llm" / GGUF).read_bytes() == gguf_bytes
    assert oct((store / sha / GGUF).stat().st_mode & 0o777) == "0o644"


def test_install_from_delivered_files_never_trusts_them(
    tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    sha = hashlib.sha256(gguf_bytes).hexdigest()
    cat = write_catalog(
        tmp_path / "c.yml",
        [entry("llm", "llm", {"type": "local", "dir": "/nonexistent"}, {GGUF: gguf_bytes})],
    )
    incoming = tmp_path / "incoming" / sha
    incoming.mkdir(parents=True)
    (incoming / GGUF).write_bytes(gguf_bytes[:-1] + b"\0")
    rc, _, err = run_cli(
        "install", "--catalog", cat, "--store", tmp_path / "s", "--from", tmp_path / "incoming"
    )
    assert rc == 1 and "delivered file" in err and f"expected {sha}" in err
    (incoming / GGUF).write_bytes(gguf_bytes)
    rc, _, err = run_cli(
        "install", "--catalog", cat, "--store", tmp_path / "s", "--from", tmp_path / "incoming"
    )
    assert rc == 0, err
    assert (tmp_path / "s" / "current" / "llm" / GGUF).read_bytes() == gguf_bytes


def test_verify_cli(tmp_path: Path, gguf_bytes: bytes, run_cli) -> None:
    f = tmp_path / GGUF
    f.write_bytes(gguf_bytes)
    sha = hashlib.sha256(gguf_bytes).hexdigest()
    rc, out, _ = run_cli("verify", f, "--sha256", sha)
    assert rc == 0 and sha in out
    rc, _, err = run_cli("verify", f, "--sha256", "0" * 64)
    assert rc == 1 and f"expected {'0' * 64}, actual {sha}" in err
    html = tmp_path / "page.gguf"
    html.write_bytes(b"<html>502</html>")
    rc, _, err = run_cli("verify", html)
    assert rc == 1 and "not a GGUF file" in err


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {
                "name": "a",
                "role": "asr",
                "source": {"type": "local", "dir": "/x"},
                "files": [{"name": "f"}],
            },
            "role 'asr'",
        ),
        (
            {"name": "a", "role": "llm", "source": {"type": "ftp"}, "files": [{"name": "f"}]},
            "source.type",
        ),
        (
            {"name": "a", "role": "llm", "source": {"type": "hub"}, "files": [{"name": "f"}]},
            "needs `repo`",
        ),
        (
            {
                "name": "a",
                "role": "llm",
                "source": {"type": "local", "dir": "/x"},
                "files": [{"name": "../f"}],
            },
            "plain file name",
        ),
        (
            {
                "name": "a",
                "role": "llm",
                "source": {"type": "local", "dir": "/x"},
                "files": [{"name": "f", "sha256": "abc"}],
            },
            "64 hex",
        ),
    ],
)
def test_catalog_rejects_bad_entries(raw: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog({"models_catalog": [raw]})


def test_stamps_are_dropped_with_the_bundle(tmp_path: Path, run_cli) -> None:
    store = tmp_path / "store"
    sha1, _ = _version(tmp_path, 1, run_cli, store)
    assert StampBook(store / ".verified" / f"{sha1}.json").get(GGUF) is not None
    shutil.rmtree(store / sha1)
    assert Store(store).installed("llm") is None
