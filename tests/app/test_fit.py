"""`voicefleet fit`: the memory-fit preflight, on shape-exact GGUF headers.

The 3B/7B files are real GGUF headers (exact tensor shapes and llama.cpp's Q4_K_M type
choices) followed by a sparse hole of the right length, so app.gguf reads them like the real
downloads (it checks the file is as long as its tensors) without 2-5 GB on disk.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from app.cli import main
from app.fit import (
    GIB,
    DeviceProfile,
    FitConfig,
    FitInputError,
    ModelShape,
    check_fit,
    compute_buffer_bytes,
)
from app.gguf import read_header

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
SMOLLM2 = Path.home() / ".cache/voicefleet/models/current/llm/SmolLM2-135M-Instruct.Q4_1.gguf"

F32, Q4_K, Q6_K = 0, 12, 14
Q4_K_M_FILE_TYPE = 15


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp (llama-quant.cpp): Q4_K_M gives these layers' attn_v/ffn_down Q6_K.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def write_shape_gguf(
    path: Path,
    *,
    n_layers: int,
    n_embd: int,
    n_ff: int,
    n_head: int,
    n_kv_heads: int,
    n_vocab: int,
    tied_embeddings: bool,
    qkv_bias: bool = False,
) -> Path:
    """A Q4_K_M GGUF header with the given Llama-family shape; tensor data is a sparse hole."""
    head_dim = n_embd // n_head
    tensors: list[tuple[str, tuple[int, ...], int]] = [
        ("token_embd.weight", (n_embd, n_vocab), Q6_K if tied_embeddings else Q4_K)
    ]
    for i in range(n_layers):
        p = f"blk.{i}."
        more = Q6_K if _use_more_bits(i, n_layers) else Q4_K
        tensors += [
            (p + "attn_norm.weight", (n_embd,), F32),
            (p + "attn_q.weight", (n_embd, n_embd), Q4_K),
            (p + "attn_k.weight", (n_embd, n_kv_heads * head_dim), Q4_K),
            (p + "attn_v.weight", (n_embd, n_kv_heads * head_dim), more),
            (p + "attn_output.weight", (n_embd, n_embd), Q4_K),
            (p + "ffn_norm.weight", (n_embd,), F32),
            (p + "ffn_gate.weight", (n_embd, n_ff), Q4_K),
            (p + "ffn_up.weight", (n_embd, n_ff), Q4_K),
            (p + "ffn_down.weight", (n_ff, n_embd), more),
        ]
        if qkv_bias:
            kv_dim = n_kv_heads * head_dim
            tensors += [
                (p + "attn_q.bias", (n_embd,), F32),
                (p + "attn_k.bias", (kv_dim,), F32),
                (p + "attn_v.bias", (kv_dim,), F32),
            ]
    tensors.append(("output_norm.weight", (n_embd,), F32))
    if not tied_embeddings:
        tensors.append(("output.weight", (n_embd, n_vocab), Q6_K))

    arch = "llama"
    meta: list[tuple[str, int, bytes]] = []

    def kv_u32(key: str, value: int) -> None:
        meta.append((key, 4, struct.pack("<I", value)))

    def kv_str(key: str, value: str) -> None:
        raw = value.encode()
        meta.append((key, 8, struct.pack("<Q", len(raw)) + raw))

    kv_str("general.architecture", arch)
    kv_str("general.name", f"shape {n_layers}L {n_embd}")
    kv_u32("general.file_type", Q4_K_M_FILE_TYPE)
    kv_u32(f"{arch}.block_count", n_layers)
    kv_u32(f"{arch}.context_length", 131072)
    kv_u32(f"{arch}.embedding_length", n_embd)
    kv_u32(f"{arch}.feed_forward_length", n_ff)
    kv_u32(f"{arch}.attention.head_count", n_head)
    kv_u32(f"{arch}.attention.head_count_kv", n_kv_heads)
    kv_u32(f"{arch}.vocab_size", n_vocab)

    def string(s: str) -> bytes:
        return struct.pack("<Q", len(s)) + s.encode()

    sizes = {F32: (1, 4), Q4_K: (256, 144), Q6_K: (256, 210)}
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
    for key, vtype, payload in meta:
        out += string(key) + struct.pack("<I", vtype) + payload
    offset = 0
    for name, shape, ggml_type in tensors:
        out += string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
        n = 1
        for d in shape:
            n *= d
        block, nbytes = sizes[ggml_type]
        offset += (n // block * nbytes + 31) // 32 * 32
    data_offset = (len(out) + 31) // 32 * 32
    with path.open("wb") as f:
        f.write(out)
        f.truncate(data_offset + offset)  # sparse: no blocks for the weights
    return path


@pytest.fixture(scope="module")
def llama32_3b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shape_gguf(
        tmp_path_factory.mktemp("gguf") / "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        n_layers=28,
        n_embd=3072,
        n_ff=8192,
        n_head=24,
        n_kv_heads=8,
        n_vocab=128256,
        tied_embeddings=True,
    )


@pytest.fixture(scope="module")
def qwen25_7b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The field report's failing model: Qwen2.5-7B-Instruct Q4_K_M.
    return write_shape_gguf(
        tmp_path_factory.mktemp("gguf") / "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        n_layers=28,
        n_embd=3584,
        n_ff=18944,
        n_head=28,
        n_kv_heads=4,
        n_vocab=152064,
        tied_embeddings=False,
        qkv_bias=True,
    )


def run_fit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["fit", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_3b_shape_matches_the_real_model(llama32_3b: Path) -> None:
    shape = ModelShape.from_header(read_header(llama32_3b))
    # The real Llama-3.2-3B-Instruct-Q4_K_M.gguf is ~2.02 GB, the quantized shape model
    # 2,014,777,664 bytes (header included): the weights alone are a few MB less.
    assert 2.00e9 < shape.weights_bytes < 2.02e9
    assert (shape.n_layers, shape.n_kv_heads, shape.key_length) == (28, 8, 128)
    assert shape.kv_bytes_per_token("f16") == 112 * 1024
    assert shape.kv_bytes_per_token("q8_0") == 28 * 8 * 256 * 34 / 32


def test_field_config_fits_on_orin_nx_16gb_with_its_numbers(
    llama32_3b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_fit(
        capsys, str(llama32_3b), "--inventory", str(EXAMPLE), "--group", "orin_nx_16gb"
    )
    assert code == 0, out + err
    assert "FITS" in out
    assert "2.01 GB" in out  # weights
    assert "112 KiB/token × 2048 × 8" in out
    assert "KV cache           1.75 GiB" in out
    assert "-c 16384" in out
    assert "orin_nx_16gb" in out
    # Roofline: 102.4 GB/s over ~2.01 GB of weights.
    assert "decode roofline  102.4 GB/s / 2.01 GB = 50.9 tok/s" in out


def test_json_report_has_the_budget(llama32_3b: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_fit(
        capsys,
        str(llama32_3b),
        *("--inventory", str(EXAMPLE), "--group", "orin_nx_16gb", "--json"),
    )
    report = json.loads(out)
    assert code == 0 and report["fits"] is True
    items = report["items_bytes"]
    assert items["kv_cache"] == 1.75 * GIB
    assert set(items) == {"weights", "kv_cache", "compute", "runtime", "stt", "tts", "os_reserve"}
    assert report["total_bytes"] == sum(items.values())
    assert report["mem_available_bytes"] == 13800 * 1024 * 1024
    assert report["headroom_bytes"] > 5 * GIB


def test_7b_on_a_unit_with_little_memory_is_refused(
    qwen25_7b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_fit(
        capsys,
        str(qwen25_7b),
        *("--inventory", str(EXAMPLE), "--group", "orin_nx_16gb"),
        "--mem-available-mib",
        "6144",
    )
    assert code == 1
    assert "DOES NOT FIT" in out
    assert "6.00 GiB  (given" in out
    # Weights of a 7B Q4_K_M: ~4.4-4.7 GB.
    report_line = next(line for line in out.splitlines() if "weights" in line)
    assert "(4." in report_line
    # What to lower, with numbers.
    assert "KV cache q8_0" in out
    assert "lower ctx_per_slot to" in out or "smaller model" in out


def test_same_7b_fits_with_the_profiles_typical_memory(
    qwen25_7b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Control: the refusal above is about memory, not about the model being unreadable.
    code, out, _ = run_fit(
        capsys, str(qwen25_7b), "--inventory", str(EXAMPLE), "--group", "orin_nx_16gb"
    )
    assert code == 0, out


def test_field_config_does_not_fit_an_orin_nano_without_the_groups_overrides(
    llama32_3b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # orin_nano_8gb group_vars lower KV to q8_0 and parallel to 4: with them it fits ...
    code, out, _ = run_fit(
        capsys, str(llama32_3b), "--inventory", str(EXAMPLE), "--group", "orin_nano_8gb"
    )
    assert code == 0, out
    assert "KV q8_0" in out
    # ... with the NX's config forced back, it does not, and the suggestions say what helps.
    code, out, _ = run_fit(
        capsys,
        str(llama32_3b),
        *("--inventory", str(EXAMPLE), "--group", "orin_nano_8gb"),
        *("--kv-type", "f16", "--parallel", "8"),
    )
    assert code == 1
    assert "DOES NOT FIT" in out
    assert "lower parallel to" in out


def test_small_context_per_slot_warns(llama32_3b: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The field report's defect: -c 2048 -np 8 left 256 tokens per conversation.
    code, out, _ = run_fit(
        capsys,
        str(llama32_3b),
        *("--inventory", str(EXAMPLE), "--group", "orin_nx_16gb"),
        *("--ctx-per-slot", "256"),
    )
    assert code == 0
    assert "WARNING: ctx_per_slot 256 is below the 1024 tokens" in out


def test_suggested_ctx_per_slot_actually_fits(llama32_3b: Path) -> None:
    shape = ModelShape.from_header(read_header(llama32_3b))
    profile = DeviceProfile("tiny", None, 50.0, 512, 0)
    config = FitConfig(ctx_per_slot=4096, parallel=8)
    mem = 5 * GIB
    report = check_fit(shape, profile, config, mem, "given")
    assert not report.fits
    suggestion = next(s for s in report.suggestions if s.startswith("lower ctx_per_slot"))
    ctx = int(suggestion.split()[3])
    assert 256 <= ctx < 4096
    assert check_fit(shape, profile, FitConfig(ctx_per_slot=ctx), mem, "given").fits
    assert not check_fit(shape, profile, FitConfig(ctx_per_slot=ctx + 256), mem, "given").fits


def test_compute_buffer_estimate_scales_with_ubatch(llama32_3b: Path) -> None:
    shape = ModelShape.from_header(read_header(llama32_3b))
    small = compute_buffer_bytes(shape, FitConfig(ubatch=256))
    large = compute_buffer_bytes(shape, FitConfig(ubatch=512))
    # One ubatch of f32 logits over a 128k vocab dominates: ~125 MiB per 256 tokens.
    assert 150 * 2**20 < small < 300 * 2**20
    assert large - small == 256 * 4 * (128256 + 2 * 8192 + 4 * 3072)


@pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make setup` (voicefleet models fetch)")
def test_real_gguf_header(capsys: pytest.CaptureFixture[str]) -> None:
    shape = ModelShape.from_header(read_header(SMOLLM2))
    # SmolLM2-135M: 30 layers, 3 KV heads × 64 dims → 30 × 3 × 128 × 2 bytes per token.
    assert (shape.n_layers, shape.n_kv_heads, shape.key_length) == (30, 3, 64)
    assert shape.kv_bytes_per_token("f16") == 23040
    assert 0.9 * SMOLLM2.stat().st_size < shape.weights_bytes < SMOLLM2.stat().st_size
    code, out, _ = run_fit(
        capsys,
        str(SMOLLM2),
        *("--inventory", str(ROOT / "inventory" / "sim"), "--mem-available-mib", "4096"),
    )
    assert code == 0, out
    assert "device     sim" in out


def test_bad_inputs_fail_clearly(
    tmp_path: Path, llama32_3b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "model.gguf"
    html.write_text("<html>rate limited</html>")
    code, _, err = run_fit(
        capsys, str(html), "--inventory", str(EXAMPLE), "--group", "orin_nx_16gb"
    )
    assert code == 2 and "not a GGUF file" in err
    code, _, err = run_fit(
        capsys, str(llama32_3b), "--inventory", str(EXAMPLE), "--group", "xavier"
    )
    assert code == 2 and "unknown device profile 'xavier'" in err
    code, _, err = run_fit(capsys, str(llama32_3b), "--inventory", str(EXAMPLE))
    assert code == 2 and "no device profile chosen" in err
    with pytest.raises(FitInputError, match="kv_type 'q3'"):
        FitConfig(kv_type="q3")
