"""Build keys (scripts/build_llama_server.sh --print-key) and the controller artifact cache
(roles/llamacpp/files/artifact_lookup.sh): what decides whether a unit builds or copies."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "build_llama_server.sh"
LOOKUP = ROOT / "roles" / "llamacpp" / "files" / "artifact_lookup.sh"
PINS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "pins.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
SDIST_NAME = f"llama_cpp_python-{PINS['LLAMA_CPP_PYTHON_VERSION']}.tar.gz"


def key(*flags: str, arch: str = "x86_64", sdist: Path | None = None, **env: str) -> str:
    environment = {**os.environ, "TARGET_ARCH": arch}
    if sdist is None:
        environment["SDIST_SHA256"] = PINS["LLAMA_CPP_PYTHON_SHA256"]
    environment.update(env)
    out = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--print-key",
            str(sdist or Path("/nonexistent") / SDIST_NAME),
            *flags,
        ],
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_key_is_stable_and_depends_on_every_input() -> None:
    base = key()
    assert len(base) == 16 and base == key()
    cuda = ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=87"]
    assert key(*cuda, arch="aarch64") != key(*cuda, arch="x86_64")
    assert key(*cuda, arch="aarch64") != key(
        "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90", arch="aarch64"
    )
    assert key("-DGGML_CPU_REPACK=OFF") != base
    assert key(SDIST_SHA256="0" * 64) != base
    assert key(EXTRA_TARGETS="llama-quantize") != base


def test_a_cross_build_has_a_key_of_its_own() -> None:
    # aarch64 built here with Debian's cross toolchain: not the key of a build on an aarch64
    # host with the same flags, nor an x86_64 one; the arch comes from the triple
    cross = key(arch="aarch64", CROSS_TRIPLE="aarch64-linux-gnu")
    assert cross == key(arch="", CROSS_TRIPLE="aarch64-linux-gnu")
    assert cross not in {key(arch="aarch64"), key(arch="x86_64")}
    assert cross != key(arch="aarch64", CROSS_TRIPLE="aarch64-linux-gnu", EXTRA_TARGETS="x")


def test_pinned_sha_gives_the_same_key_as_hashing_the_file(tmp_path: Path) -> None:
    # The controller computes keys from the pin; a build hashes the tarball it has.
    sdist = tmp_path / SDIST_NAME
    sdist.write_bytes(b"not really an sdist")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert key(sdist=sdist) == key(SDIST_SHA256=digest)


def fake_artifact(directory: Path, build_key: str) -> Path:
    (directory / "bin").mkdir(parents=True)
    files = {}
    for name in ("llama-server", "llama-bench"):
        path = directory / "bin" / name
        path.write_bytes(f"binary {name} {build_key}".encode())
        files[f"bin/{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {"build_key": build_key, "files": files}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def lookup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(LOOKUP), *args], capture_output=True, text=True)


def test_lookup_finds_cached_prebuilt_or_missing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    prebuilt = fake_artifact(tmp_path / "cpu", "aaaaaaaaaaaaaaaa")
    assert lookup(str(cache), "bbbbbbbbbbbbbbbb", str(prebuilt)).stdout.strip() == "missing"
    assert lookup(
        str(cache), "aaaaaaaaaaaaaaaa", str(tmp_path / "none"), str(prebuilt)
    ).stdout.strip() == (f"prebuilt {prebuilt}")
    seeded = lookup("--seed", str(cache), "aaaaaaaaaaaaaaaa", str(prebuilt))
    assert seeded.returncode == 0, seeded.stderr
    assert lookup(str(cache), "aaaaaaaaaaaaaaaa").stdout.strip() == "cached"
    with tarfile.open(cache / "aaaaaaaaaaaaaaaa.tar.gz") as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
        sums = tar.extractfile("./SHA256SUMS")
        assert sums is not None
        listed = sums.read().decode()
    assert names == {"manifest.json", "SHA256SUMS", "bin/llama-server", "bin/llama-bench"}
    assert "bin/llama-server" in listed and len(listed.splitlines()) == 2


def test_seeding_refuses_a_directory_of_another_key_or_a_corrupt_binary(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    prebuilt = fake_artifact(tmp_path / "cpu", "aaaaaaaaaaaaaaaa")
    wrong = lookup("--seed", str(cache), "bbbbbbbbbbbbbbbb", str(prebuilt))
    assert wrong.returncode != 0 and "is not build bbbbbbbbbbbbbbbb" in wrong.stderr
    (prebuilt / "bin" / "llama-server").write_bytes(b"tampered")
    corrupt = lookup("--seed", str(cache), "aaaaaaaaaaaaaaaa", str(prebuilt))
    assert corrupt.returncode != 0
    assert not (cache / "aaaaaaaaaaaaaaaa.tar.gz").exists()


@pytest.mark.skipif(
    not (Path.home() / ".cache/voicefleet/llama.cpp/cpu/manifest.json").is_file(),
    reason="run `make setup` (CPU llama-server build)",
)
def test_the_sim_role_key_matches_the_setup_build() -> None:
    # The simulated fleet reuses `make setup`'s CPU build: same script, same key, no rebuild.
    manifest = json.loads(
        (Path.home() / ".cache/voicefleet/llama.cpp/cpu/manifest.json").read_text()
    )
    assert manifest["build_key"] == key(arch=manifest["arch"])
