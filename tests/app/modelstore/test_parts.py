"""Files made of ordered parts (a model split across packages): every part is verified
against its own pin, the join is verified as a whole, and a bad part, a wrong join or a
wrong order installs nothing and leaves the good bundle current."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from app.modelstore.catalog import CatalogError, parse_catalog
from app.modelstore.pin import resolve_entry
from app.modelstore.sources import FetchContext

from .conftest import entry, make_gguf, write_catalog

GGUF = "model.gguf"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pin(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": _sha(data)}


def _split_entry(
    name: str, tmp_path: Path, whole: bytes, cut: int, joined: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Path, Path]:
    """An LLM entry whose GGUF is two parts in two local sources (the second with its own
    `source`, as two PyPI packages are) plus a whole config file from the entry's source."""
    a, b = tmp_path / f"{name}-pkg1", tmp_path / f"{name}-pkg2"
    a.mkdir()
    b.mkdir()
    (a / "model.gguf.part1").write_bytes(whole[:cut])
    (b / "model.gguf.part2").write_bytes(whole[cut:])
    (a / "config.json").write_bytes(b'{"n": 1}')
    raw = entry(name, "llm", {"type": "local", "dir": str(a)}, {"config.json": b'{"n": 1}'})
    split = {
        "name": GGUF,
        **(joined or _pin(whole)),
        "parts": [
            {"path": "model.gguf.part1", **_pin(whole[:cut])},
            {
                "path": "model.gguf.part2",
                "source": {"type": "local", "dir": str(b)},
                **_pin(whole[cut:]),
            },
        ],
    }
    raw["files"].insert(0, split)
    return raw, a, b


@pytest.fixture
def good(tmp_path: Path, run_cli) -> tuple[Path, bytes]:
    """A store serving a good split v1 (installed through the parts path itself)."""
    whole = make_gguf(200 * 1024, seed=1)
    raw, _, _ = _split_entry("llm-v1", tmp_path, whole, cut=len(whole) // 3)
    store = tmp_path / "store"
    rc, out, err = run_cli(
        "fetch", "--catalog", write_catalog(tmp_path / "v1.yml", [raw]), "--store", store, "--json"
    )
    assert rc == 0, err
    assert out["installed"]["llm"]["files"] == [GGUF, "config.json"]
    return store, whole


def _assert_serves(store: Path, whole: bytes) -> None:
    served = store / "current" / "llm"
    assert os.readlink(served) == f"../{_sha(whole)}"
    assert (served / GGUF).read_bytes() == whole
    assert sorted(p.name for p in served.iterdir()) == ["config.json", GGUF]
    bundles = [p.name for p in store.iterdir() if not p.name.startswith(".")]
    assert sorted(bundles) == sorted(["current", _sha(whole)])


def test_parts_are_joined_in_order_verified_and_installed(
    good: tuple[Path, bytes], tmp_path: Path, run_cli
) -> None:
    store, whole = good
    _assert_serves(store, whole)
    assert not (store / ".staging" / _sha(whole)).exists()  # parts gone with the staging dir
    rc, out, err = run_cli(
        "fetch", "--catalog", tmp_path / "v1.yml", "--store", store, "--json"
    )  # idempotent: stamps, no part fetched or hashed again
    assert rc == 0, err
    assert out["changed"] is False and out["installed"]["llm"]["hashed_bytes"] == 0


def test_a_bad_part_installs_nothing_and_the_fetch_resumes_once_fixed(
    good: tuple[Path, bytes], tmp_path: Path, run_cli
) -> None:
    store, old = good
    whole = make_gguf(300 * 1024, seed=2)
    cut = len(whole) // 2
    raw, pkg1, pkg2 = _split_entry("llm-v2", tmp_path, whole, cut)
    cat = write_catalog(tmp_path / "v2.yml", [raw])
    flipped = bytearray(whole[cut:])
    flipped[100] ^= 0x01
    (pkg2 / "model.gguf.part2").write_bytes(bytes(flipped))

    rc, _, err = run_cli("fetch", "--catalog", cat, "--store", store)
    assert rc == 1
    assert f"{GGUF} (part 2 of 2)" in err and "sha256 mismatch" in err
    assert f"expected {_sha(whole[cut:])}, actual {_sha(bytes(flipped))}" in err
    _assert_serves(store, old)

    # part 1 verified and stays staged: with its source gone, the fixed part 2 completes
    (pkg1 / "model.gguf.part1").unlink()
    (pkg2 / "model.gguf.part2").write_bytes(whole[cut:])
    rc, out, err = run_cli("fetch", "--catalog", cat, "--store", store, "--json")
    assert rc == 0, err
    assert out["installed"]["llm"]["action"] == "installed"
    assert (store / "current" / "llm" / GGUF).read_bytes() == whole
    assert (store / _sha(old) / GGUF).read_bytes() == old  # kept for rollback


def test_a_wrong_joined_hash_never_installs(
    good: tuple[Path, bytes], tmp_path: Path, run_cli
) -> None:
    store, old = good
    whole = make_gguf(300 * 1024, seed=3)
    wrong = {"size": len(whole), "sha256": "ab" * 32}
    raw, _, _ = _split_entry("llm-v3", tmp_path, whole, len(whole) // 2, joined=wrong)
    rc, _, err = run_cli("fetch", "--catalog", write_catalog(tmp_path / "v3.yml", [raw]),
                         "--store", store)  # fmt: skip
    assert rc == 1
    assert "joined from 2 verified parts" in err
    assert f"expected {'ab' * 32}, actual {_sha(whole)}" in err
    _assert_serves(store, old)
    assert not (store / ".staging" / ("ab" * 32) / GGUF).exists()  # no bad join left to resume


def test_parts_listed_out_of_order_fail_the_join(
    good: tuple[Path, bytes], tmp_path: Path, run_cli
) -> None:
    store, old = good
    whole = make_gguf(300 * 1024, seed=4)
    raw, _, _ = _split_entry("llm-v4", tmp_path, whole, len(whole) // 2)
    parts = raw["files"][0]["parts"]
    raw["files"][0]["parts"] = [parts[1], parts[0]]  # each part still matches its own pin
    rc, _, err = run_cli("fetch", "--catalog", write_catalog(tmp_path / "v4.yml", [raw]),
                         "--store", store)  # fmt: skip
    assert rc == 1
    # the swapped join is the same bytes in another order: same size, not the file's sha256
    assert "joined from 2 verified parts" in err and "sha256 mismatch" in err
    assert "GGUF: not a GGUF file" in err  # the first bytes are now part 2's
    _assert_serves(store, old)


def test_an_unpinned_part_is_refused_before_any_download(tmp_path: Path, run_cli) -> None:
    whole = make_gguf(100 * 1024, seed=5)
    raw, _, _ = _split_entry("llm-v5", tmp_path, whole, 1000)
    del raw["files"][0]["parts"][1]["sha256"]
    rc, _, err = run_cli("fetch", "--catalog", write_catalog(tmp_path / "v5.yml", [raw]),
                         "--store", tmp_path / "store")  # fmt: skip
    assert rc == 1 and "no size/sha256 for model.gguf or its parts" in err
    assert not (tmp_path / "store" / ".staging").exists()
    with pytest.raises(CatalogError, match="made of parts"):
        hub = {**raw, "source": {"type": "hub", "repo": "o/r", "revision": "main"}}
        resolve_entry(parse_catalog([hub]).entries[0], FetchContext())


def _file(**extra: Any) -> dict[str, Any]:
    return {"name": "model.bin", "size": 10, "sha256": "0" * 64, **extra}


def _part(path: str, size: int = 5, **extra: Any) -> dict[str, Any]:
    return {"path": path, "size": size, "sha256": "1" * 64, **extra}


@pytest.mark.parametrize(
    ("file", "message"),
    [
        (_file(path="x/model.bin", parts=[_part("a"), _part("b")]), "has no `path` of its own"),
        (_file(parts=[_part("a", 10)]), "at least two parts"),
        (_file(parts=[_part("a"), _part("b", 6)]), "add up to 11 bytes, the joined file is 10"),
        (_file(parts=[_part("a"), {"size": 5}]), "part 2: each part needs a `path`"),
        (_file(parts=[_part("a"), _part("b", source={"type": "pypi", "package": "p"})]),
         "part 2: source type pypi needs `version`"),
        (_file(parts=[_part("a"), _part("b", sha256="xyz")]), "part 2: sha256 'xyz'"),
    ],
)  # fmt: skip
def test_malformed_parts_are_refused_by_name(file: dict[str, Any], message: str) -> None:
    raw = {"name": "m", "role": "stt", "source": {"type": "local", "dir": "/x"}, "files": [file]}
    with pytest.raises(CatalogError) as err:
        parse_catalog([raw])
    assert str(err.value).startswith("model 'm': file model.bin") and message in str(err.value)


def test_free_disk_covers_the_parts_and_the_joined_file(tmp_path: Path) -> None:
    from app.modelstore.fetch import _missing_bytes

    whole = make_gguf(10 * 1024, seed=6)
    raw, _, _ = _split_entry("llm-v6", tmp_path, whole, 1000)
    spec = parse_catalog([raw]).entries[0].files[0]
    staged = tmp_path / "staging"
    (staged / ".parts").mkdir(parents=True)
    assert _missing_bytes(staged, spec) == 2 * len(whole)  # both parts, then the join
    (staged / ".parts" / f"{GGUF}.1").write_bytes(whole[:1000])
    assert _missing_bytes(staged, spec) == 2 * len(whole) - 1000
    (staged / GGUF).write_bytes(whole)  # joined by an earlier run: nothing more
    assert _missing_bytes(staged, spec) == 0
