"""app/gguf.py against the pinned llama.cpp: its tensor-type table equals the pinned gguf-py's
(so a llama.cpp bump that adds a type fails here, not as a 0-byte tensor in the fit check),
and a type it does not know is an error naming it."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from app.gguf import GGML_TYPES, GGUFError, read_header

from .modelstore.conftest import make_gguf

ROOT = Path(__file__).resolve().parents[2]
PINS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "pins.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
VERSION = PINS["LLAMA_CPP_PYTHON_VERSION"]
# Where scripts/setup.sh keeps the pinned sdist (the tree llama-server is built from).
SDIST = (
    Path(os.environ.get("VOICEFLEET_HOME", Path.home() / ".cache" / "voicefleet"))
    / "src"
    / f"llama_cpp_python-{VERSION}.tar.gz"
)
CONSTANTS = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/gguf-py/gguf/constants.py"


def pinned_gguf_constants(tmp_path: Path) -> ModuleType:
    if not SDIST.is_file():
        pytest.fail(f"{SDIST} missing: run `make setup` (downloads the pinned sdist)")
    digest = hashlib.sha256(SDIST.read_bytes()).hexdigest()
    assert digest == PINS["LLAMA_CPP_PYTHON_SHA256"], f"{SDIST} is not the pinned sdist"
    with tarfile.open(SDIST) as tar:
        member = tar.extractfile(CONSTANTS)
        assert member is not None, f"{CONSTANTS} not in {SDIST}"
        source = tmp_path / "gguf_constants.py"
        source.write_bytes(member.read())
    # constants.py imports only enum and typing: load it alone, not the gguf package.
    spec = importlib.util.spec_from_file_location("pinned_gguf_constants", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_type_table_equals_the_pinned_gguf_py(tmp_path: Path) -> None:
    gguf_py = pinned_gguf_constants(tmp_path)
    pinned = {
        int(kind): (kind.name, *gguf_py.GGML_QUANT_SIZES[kind])
        for kind in gguf_py.GGMLQuantizationType
    }
    ours = {type_id: tuple(kind) for type_id, kind in GGML_TYPES.items()}
    missing = {i: pinned[i] for i in pinned.keys() - ours.keys()}
    extra = {i: ours[i] for i in ours.keys() - pinned.keys()}
    differ = {i: (ours[i], pinned[i]) for i in ours.keys() & pinned.keys() if ours[i] != pinned[i]}
    assert not (missing or extra or differ), (
        f"app/gguf.py GGML_TYPES lags llama.cpp {VERSION}: missing {missing}, "
        f"not in gguf-py {extra}, different (ours, pinned) {differ}"
    )


def test_unknown_tensor_type_is_an_error_naming_it(tmp_path: Path) -> None:
    unknown = max(GGML_TYPES) + 1
    path = tmp_path / "future.gguf"
    path.write_bytes(make_gguf(1024, ggml_type=unknown))
    with pytest.raises(GGUFError, match=rf"tensor 'w' has ggml type {unknown}\b"):
        read_header(path)


def test_newest_pinned_type_is_sized_from_the_table(tmp_path: Path) -> None:
    # Q1_0 (41, new in the pinned tree): 1024 elements = 8 blocks of 18 bytes. The file holds
    # 4096 bytes of data, so the header is complete; cut short of 144 bytes, it is truncated.
    path = tmp_path / "q1.gguf"
    data = make_gguf(1024, ggml_type=41)
    path.write_bytes(data)
    header = read_header(path)
    assert header.tensors[0].nbytes == 8 * 18
    assert header.tensor_data_bytes == 144
    path.write_bytes(data[: header.data_offset + 100])
    with pytest.raises(GGUFError, match="truncated"):
        read_header(path)
