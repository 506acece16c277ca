"""A small, strict GGUF header reader (no llama.cpp needed).

Used by model verification (a file cut short, an HTML error page saved as .gguf, a wrong
magic all fail here with a clear reason) and by the memory-fit calculator (layers, KV heads,
head size, weight bytes). Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Guards against garbage counts in a corrupt header (real files: < 2k tensors, < 100 KVs).
MAX_TENSORS = 1_000_000
MAX_KVS = 100_000
MAX_STRING = 1 << 26

# ggml type id -> (block size in elements, bytes per block)
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
}

# GGUF metadata value types
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING = 8
_ARRAY = 9


class GGUFError(ValueError):
    """The file is not a complete, well-formed GGUF file."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int | None:
        size = GGML_TYPE_SIZES.get(self.ggml_type)
        if size is None:
            return None
        block, block_bytes = size
        return self.n_elements // block * block_bytes


@dataclass
class GGUFHeader:
    path: Path
    version: int
    tensor_count: int
    kv_count: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(repr=False)
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def file_type(self) -> int | None:
        value = self.metadata.get("general.file_type")
        return int(value) if value is not None else None

    def arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def tensor_data_bytes(self) -> int:
        """Bytes of tensor data the header promises (what the weights cost in memory)."""
        return self.expected_size - self.data_offset

    @property
    def expected_size(self) -> int:
        """Smallest file size consistent with the header."""
        end = self.data_offset
        for t in self.tensors:
            nbytes = t.nbytes
            end = max(end, self.data_offset + t.offset + (nbytes or 0))
        return end


class _Reader:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f = f
        self.path = path

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError(f"{self.path}: file ends inside the GGUF header (truncated)")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > MAX_STRING:
            raise GGUFError(f"{self.path}: implausible string length {length} in header")
        return self.read(length).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep_arrays: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if count > MAX_STRING:
                raise GGUFError(f"{self.path}: implausible array length {count}")
            if item_type in _SCALARS and not keep_arrays:
                self.read(struct.calcsize(_SCALARS[item_type]) * count)
                return count
            items = [self.value(item_type, keep_arrays) for _ in range(count)]
            return items if keep_arrays else count
        raise GGUFError(f"{self.path}: unknown metadata value type {vtype}")


def read_header(path: Path | str, keep_arrays: bool = False) -> GGUFHeader:
    """Parse and sanity-check a GGUF header; raise GGUFError with the reason if it is bad.

    Arrays (e.g. the tokenizer vocabulary) are skipped and recorded as their length unless
    keep_arrays is set. Checks: magic, version, plausible counts, architecture and file type
    present, and that the file is at least as long as its tensors say (a cut-short download
    fails here even when its header is intact).
    """
    path = Path(path)
    file_size = path.stat().st_size
    with path.open("rb") as raw:
        r = _Reader(raw, path)
        magic = raw.read(4)
        if magic != GGUF_MAGIC:
            shown = magic[:4].decode("ascii", errors="replace") or "empty file"
            raise GGUFError(f"{path}: not a GGUF file (magic {shown!r}, expected 'GGUF')")
        version = r.unpack("<I")
        if version not in SUPPORTED_VERSIONS:
            raise GGUFError(f"{path}: unsupported GGUF version {version}")
        tensor_count = r.unpack("<Q")
        kv_count = r.unpack("<Q")
        if tensor_count > MAX_TENSORS or kv_count > MAX_KVS:
            raise GGUFError(
                f"{path}: implausible header counts (tensors={tensor_count}, kvs={kv_count})"
            )
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = r.string()
            vtype = r.unpack("<I")
            metadata[key] = r.value(vtype, keep_arrays)
        tensors = []
        for _ in range(tensor_count):
            name = r.string()
            n_dims = r.unpack("<I")
            if n_dims > 8:
                raise GGUFError(f"{path}: tensor {name!r} has {n_dims} dimensions")
            shape = tuple(r.unpack("<Q") for _ in range(n_dims))
            tensors.append(TensorInfo(name, shape, r.unpack("<I"), r.unpack("<Q")))
        alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
        pos = raw.tell()
        data_offset = (pos + alignment - 1) // alignment * alignment

    header = GGUFHeader(
        path=path,
        version=version,
        tensor_count=tensor_count,
        kv_count=kv_count,
        metadata=metadata,
        tensors=tensors,
        data_offset=data_offset,
        file_size=file_size,
    )
    if not header.architecture:
        raise GGUFError(f"{path}: GGUF header has no general.architecture")
    if header.file_type is None:
        raise GGUFError(f"{path}: GGUF header has no general.file_type")
    if file_size < header.expected_size:
        raise GGUFError(
            f"{path}: truncated: {file_size} bytes, the header's tensors need "
            f"{header.expected_size} bytes"
        )
    return header
