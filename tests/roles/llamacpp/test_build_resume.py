"""scripts/build_llama_server.sh resumes an interrupted build of the same key (a CUDA build
takes minutes to tens of minutes and may not finish in one go) and starts fresh otherwise.

A tiny CMake project stands in for the vendored llama.cpp: the script's logic (stamp, kept
build directory, artifact and manifest) is what is tested, not llama.cpp's compile."""

from __future__ import annotations

import fcntl
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "build_llama_server.sh"
NAME = "llama_cpp_python-0.0.1"
CMAKE = """cmake_minimum_required(VERSION 3.16)
project(fake C)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
add_executable(llama-server server.c)
add_executable(llama-bench bench.c)
"""


def make_sdist(path: Path, bench_source: str) -> Path:
    files = {
        "CMakeLists.txt": CMAKE,
        "server.c": "int main(void) { return 0; }\n",
        "bench.c": bench_source,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{NAME}/vendor/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def build(sdist: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(sdist), str(out), *flags],
        env={"PATH": "/usr/bin:/bin", "JOBS": "1", "BUILD_ROOT": str(out.parent / "b")},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    subprocess.run(["which", "cmake", "cc"], capture_output=True).returncode != 0,
    reason="cmake and a C compiler are installed by scripts/setup.sh",
)
def test_interrupted_build_resumes_and_other_flags_start_fresh(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / f"{NAME}.tar.gz", "#error not yet\n")
    out = tmp_path / "artifact"
    first = build(sdist, out)
    assert first.returncode == 1 and "build failed" in first.stderr
    assert not out.exists()  # no half artifact
    broken = tmp_path / "b" / NAME / "vendor" / "llama.cpp" / "bench.c"
    assert next((tmp_path / "b" / "cmake").rglob("server.c.o")).is_file()

    # the rest of the work happens in the kept tree (as an interrupted compile would resume)
    broken.write_text("int main(void) { return 0; }\n")
    second = build(sdist, out)
    assert second.returncode == 0, second.stderr
    assert "resuming llama-server build" in second.stdout
    log = (tmp_path / "b" / "build.log").read_text()
    assert log.count("Building C object CMakeFiles/llama-server.dir/server.c.o") == 1
    assert log.count("Building C object CMakeFiles/llama-bench.dir/bench.c.o") == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"bin/llama-server", "bin/llama-bench"}
    assert not (tmp_path / "b" / "key").exists()  # sources and objects dropped when done

    # same key again: nothing to do; other flags: a new key, fresh sources (the #error again)
    assert "already present" in build(sdist, out).stdout
    other = build(sdist, out, "-DFAKE_FLAG=1")
    assert other.returncode == 1 and "resuming" not in other.stdout
    assert json.loads((out / "manifest.json").read_text())["build_key"] == manifest["build_key"]


@pytest.mark.skipif(
    subprocess.run(["which", "cmake", "cc"], capture_output=True).returncode != 0,
    reason="cmake and a C compiler are installed by scripts/setup.sh",
)
def test_a_second_build_waits_for_the_first_and_reuses_its_artifact(tmp_path: Path) -> None:
    """Two set-ups at once used to build into the same directory together; now a build waits
    while another holds the build directory's lock, then checks again for the artifact."""
    sdist = make_sdist(tmp_path / f"{NAME}.tar.gz", "int main(void) { return 0; }\n")
    out = tmp_path / "artifact"
    assert build(sdist, out).returncode == 0
    lock = (tmp_path / "b.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another build is running (e.g. replacing the artifact)
    waiting = subprocess.Popen(
        ["bash", str(SCRIPT), str(sdist), str(out)],
        env={"PATH": "/usr/bin:/bin", "JOBS": "1", "BUILD_ROOT": str(tmp_path / "b")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert waiting.stdout is not None
        assert waiting.stdout.readline().startswith("waiting for another build")
        time.sleep(0.5)
        assert waiting.poll() is None  # still waiting
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    rest, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "already present" in rest  # checked after the wait: nothing built twice
    assert (tmp_path / "b" / "build.log").read_text().count("server.c.o") == 1
