"""A small, strict GGUF header reader (no llama.cpp needed).

Used by model verification (a file cut short, an HTML error page saved as .gguf, a wrong
magic all fail here with a clear reason) and by the memory-fit calculator (layers, KV heads,
head size, weight bytes). Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Guards against garbage counts in a corrupt header (real files: < 2k tensors, < 100 KVs).
MAX_TENSORS = 1_000_000
MAX_KVS = 100_000
MAX_STRING = 1 << 26


class GGMLType(NamedTuple):
    name: str
    block_elements: int
    block_bytes: int


# ggml tensor types, as the pinned llama.cpp's gguf-py lists them (GGMLQuantizationType and
# GGML_QUANT_SIZES; tests/app/test_gguf.py diffs this table against that file).
# id -> (name, block size in elements, bytes per block)
GGML_TYPES: dict[int, GGMLType] = {
    0: GGMLType("F32", 1, 4),
    1: GGMLType("F16", 1, 2),
    2: GGMLType("Q4_0", 32, 18),
    3: GGMLType("Q4_1", 32, 20),
    6: GGMLType("Q5_0", 32, 22),
    7: GGMLType("Q5_1", 32, 24),
    8: GGMLType("Q8_0", 32, 34),
    9: GGMLType("Q8_1", 32, 36),
    10: GGMLType("Q2_K", 256, 84),
    11: GGMLType("Q3_K", 256, 110),
    12: GGMLType("Q4_K", 256, 144),
    13: GGMLType("Q5_K", 256, 176),
    14: GGMLType("Q6_K", 256, 210),
    15: GGMLType("Q8_K", 256, 292),
    16: GGMLType("IQ2_XXS", 256, 66),
    17: GGMLType("IQ2_XS", 256, 74),
    18: GGMLType("IQ3_XXS", 256, 98),
    19: GGMLType("IQ1_S", 256, 50),
    20: GGMLType("IQ4_NL", 32, 18),
    21: GGMLType("IQ3_S", 256, 110),
    22: GGMLType("IQ2_S", 256, 82),
    23: GGMLType("IQ4_XS", 256, 136),
    24: GGMLType("I8", 1, 1),
    25: GGMLType("I16", 1, 2),
    26: GGMLType("I32", 1, 4),
    27: GGMLType("I64", 1, 8),
    28: GGMLType("F64", 1, 8),
    29: GGMLType("IQ1_M", 256, 56),
    30: GGMLType("BF16", 1, 2),
    34: GGMLType("TQ1_0", 256, 54),
    35: GGMLType("TQ2_0", 256, 66),
    39: GGMLType("MXFP4", 32, 17),
    40: GGMLType("NVFP4", 64, 36),
    41: GGMLType("Q1_0", 128, 18),
    42: GGMLType("Q2_0", 64, 18),
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
    def nbytes(self) -> int:
        """Bytes of this tensor's data (read_header admits only types in GGML_TYPES)."""
        kind = GGML_TYPES[self.ggml_type]
        return self.n_elements // kind.block_elements * kind.block_bytes


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
            end = max(end, self.data_offset + t.offset + t.nbytes)
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
            ggml_type = r.unpack("<I")
            if ggml_type not in GGML_TYPES:
                # Sizing it as 0 bytes would weaken the truncation check and the memory fit.
                raise GGUFError(
                    f"{path}: tensor {name!r} has ggml type {ggml_type}, which the pinned "
                    "llama.cpp does not know (a newer quantization, or a corrupt header)"
                )
            tensors.append(TensorInfo(name, shape, ggml_type, r.unpack("<Q")))
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
