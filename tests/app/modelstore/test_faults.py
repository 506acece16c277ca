"""Each fault: the CLI fails with a message naming the file and expected vs actual, and the
model installed before is untouched and still the one `current/<role>` serves."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import entry, make_gguf, write_catalog
from .fakehub import HTML_ERROR, FakeHub

GGUF = "model.gguf"


@pytest.fixture
def installed(tmp_path: Path, gguf_bytes: bytes, run_cli) -> Iterator[tuple[Path, str]]:
    """A store with a good v1 LLM installed from a local directory."""
    src = tmp_path / "v1"
    src.mkdir()
    (src / GGUF).write_bytes(gguf_bytes)
    cat = write_catalog(
        tmp_path / "v1.yml",
        [entry("llm-v1", "llm", {"type": "local", "dir": str(src)}, {GGUF: gguf_bytes})],
    )
    store = tmp_path / "store"
    rc, _, err = run_cli("fetch", "--catalog", cat, "--store", store)
    assert rc == 0, err
    yield store, hashlib.sha256(gguf_bytes).hexdigest()


def _assert_untouched(store: Path, old_sha: str, gguf_bytes: bytes) -> None:
    assert os.readlink(store / "current" / "llm") == f"../{old_sha}"
    served = store / "current" / "llm" / GGUF
    assert hashlib.sha256(served.read_bytes()).hexdigest() == old_sha
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == sorted(
        ["current", old_sha]
    )


def _bad_variants(good: bytes) -> dict[str, bytes]:
    mid = len(good) // 2
    return {
        "truncated": good[: len(good) - 4096],
        "flipped_byte": good[:mid] + bytes([good[mid] ^ 0x20]) + good[mid + 1 :],
        "html_error_page": HTML_ERROR,
        "wrong_size": good + b"\0" * 100,
    }


@pytest.mark.parametrize("fault", ["truncated", "flipped_byte", "html_error_page", "wrong_size"])
def test_bad_file_from_local_source(
    fault: str, installed, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    store, old_sha = installed
    new_good = make_gguf(700 * 1024, seed=2)
    bad = _bad_variants(new_good)[fault]
    src = tmp_path / "v2"
    src.mkdir()
    (src / GGUF).write_bytes(bad)
    cat = write_catalog(
        tmp_path / "v2.yml",
        [entry("llm-v2", "llm", {"type": "local", "dir": str(src)}, {GGUF: new_good})],
    )
    rc, _, err = run_cli("fetch", "--catalog", cat, "--store", store)
    assert rc == 1
    want, got = hashlib.sha256(new_good).hexdigest(), hashlib.sha256(bad).hexdigest()
    assert GGUF in err and "llm-v2" in err
    assert f"expected {want}, actual {got}" in err
    if fault != "flipped_byte":
        assert f"size {len(bad)} bytes, expected {len(new_good)}" in err
    if fault == "html_error_page":
        assert "not a GGUF file" in err
    if fault == "truncated":
        assert "GGUF: truncated" in err
    _assert_untouched(store, old_sha, gguf_bytes)


@pytest.mark.parametrize("fault", ["truncated", "flipped_byte", "html_error_page", "wrong_size"])
def test_bad_body_from_http_mirror(
    fault: str, installed, hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    store, old_sha = installed
    new_good = make_gguf(700 * 1024, seed=3)
    hub.mirror[f"llm/{GGUF}"] = _bad_variants(new_good)[fault]
    cat = write_catalog(
        tmp_path / "v2.yml",
        [
            entry(
                "llm-v2", "llm", {"type": "http", "url": f"{hub.url}/mirror/llm"}, {GGUF: new_good}
            )
        ],
    )
    rc, _, err = run_cli(
        "fetch", "--catalog", cat, "--store", store, "--retries", "1", "--backoff", "0.01"
    )
    assert rc == 1
    assert GGUF in err and f"expected {hashlib.sha256(new_good).hexdigest()}" in err
    assert "actual " in err
    assert len(hub.body_gets()) == 2  # a mangled transfer is retried once, then it gives up
    _assert_untouched(store, old_sha, gguf_bytes)


def test_source_unavailable_and_timeout(
    installed, hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    store, old_sha = installed
    new_good = make_gguf(700 * 1024, seed=4)
    hub.mirror[GGUF] = new_good
    cat = write_catalog(
        tmp_path / "v2.yml",
        [entry("llm-v2", "llm", {"type": "http", "url": f"{hub.url}/mirror"}, {GGUF: new_good})],
    )
    hub.fault, hub.hang_s = "hang", 3.0
    rc, _, err = run_cli(
        "fetch",
        "--catalog",
        cat,
        "--store",
        store,
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--timeout",
        "0.5",
    )
    assert rc == 1
    assert "timed out" in err and GGUF in err and "giving up after 2 attempts" in err
    _assert_untouched(store, old_sha, gguf_bytes)

    hub.fault = "status:404"
    rc, _, err = run_cli(
        "fetch", "--catalog", cat, "--store", store, "--retries", "3", "--backoff", "0.01"
    )
    assert rc == 1 and "HTTP 404" in err
    assert "giving up" not in err  # not transient: no retries
    hub.stop()
    rc, _, err = run_cli(
        "fetch", "--catalog", cat, "--store", store, "--retries", "1", "--backoff", "0.01"
    )
    assert rc == 1 and "unreachable" in err
    _assert_untouched(store, old_sha, gguf_bytes)


def test_interrupted_download_resumes_with_range(
    hub: FakeHub, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    hub.mirror[GGUF] = gguf_bytes
    hub.fault = "cut_once"
    cat = write_catalog(
        tmp_path / "m.yml",
        [entry("llm", "llm", {"type": "http", "url": f"{hub.url}/mirror"}, {GGUF: gguf_bytes})],
    )
    rc, _, err = run_cli("fetch", "--catalog", cat, "--store", tmp_path / "s", "--backoff", "0.01")
    assert rc == 0, err
    gets = hub.body_gets()
    assert len(gets) == 2 and gets[0][2] is None
    assert gets[1][2] == f"bytes={len(gguf_bytes) // 2}-"  # resumed, not restarted
    assert (tmp_path / "s" / "current" / "llm" / GGUF).read_bytes() == gguf_bytes


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 12 MiB filesystem (tmpfs), so the free-space check meets a real limit."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_not_enough_disk_fails_before_downloading(
    small_fs: Path, tmp_path: Path, gguf_bytes: bytes, run_cli
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / GGUF).write_bytes(gguf_bytes)
    store = small_fs / "store"
    v1 = write_catalog(
        tmp_path / "v1.yml",
        [entry("llm-v1", "llm", {"type": "local", "dir": str(src)}, {GGUF: gguf_bytes})],
    )
    rc, _, err = run_cli("fetch", "--catalog", v1, "--store", store, "--margin-mib", "1")
    assert rc == 0, err
    old_sha = hashlib.sha256(gguf_bytes).hexdigest()
    big = make_gguf(2 * 1024 * 1024, seed=5)  # 8 MiB: fits the fs alone, not with margin
    (src / "big.gguf").write_bytes(big)
    v2 = write_catalog(
        tmp_path / "v2.yml",
        [entry("llm-v2", "llm", {"type": "local", "dir": str(src)}, {"big.gguf": big})],
    )
    rc, _, err = run_cli("fetch", "--catalog", v2, "--store", store, "--margin-mib", "4")
    assert rc == 1
    assert "not enough disk for model llm-v2" in err and str(store) in err
    assert "MiB free" in err
    assert os.readlink(store / "current" / "llm") == f"../{old_sha}"
    staged = store / ".staging" / hashlib.sha256(big).hexdigest()
    assert not any(staged.iterdir()) if staged.exists() else True  # nothing was written
