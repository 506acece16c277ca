"""Memory-fit preflight: does this model + llama-server config fit on this unit?

On a Jetson CPU and GPU share one memory, so everything counts against `MemAvailable`:
model weights (from the GGUF header) + KV cache (per-token cost × ctx_per_slot × parallel,
by KV type: llama-server splits -c across -np slots, so n_ctx = ctx_per_slot × parallel) +
compute buffers + CUDA runtime + STT + TTS budgets + an OS reserve. A config that does not
fit fails here with the numbers and what to lower, instead of an `NvMapMemAllocInternalTagged`
failure at load time. Also prints the decode roofline (memory bandwidth / weight bytes): every
decoded token reads all weights once, so no config decodes faster than that.

The calculator only; `voicefleet fit` (its inputs: the inventory's group_vars, MemAvailable)
is app/fit_cli.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.gguf import GGUFHeader

MIB = 1 << 20
GIB = 1 << 30

# Bytes per KV element by llama.cpp cache type (-ctk/-ctv): block bytes / block size.
KV_TYPE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
# A voice conversation: system prompt (~100 tokens) + ~10 short turns + a reply of up to
# max_tokens_cap (512) tokens. Below this, long conversations get HTTP 400 (context exceeded).
DEFAULT_MIN_CTX_PER_SLOT = 1024
# Leave this fraction of MemAvailable unplanned: fragmentation makes large CUDA allocations
# fail before memory is strictly exhausted (NvMapMemAllocInternalTagged).
DEFAULT_HEADROOM_FRACTION = 0.05


class FitInputError(ValueError):
    """The inputs (model file, profile, config) are missing or invalid."""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    # Typical MemAvailable of a freshly booted unit (headless). None: read this machine's.
    mem_available_mib: int | None
    bandwidth_gb_s: float
    os_reserve_mib: int
    # CUDA context, cuBLAS workspaces and kernels; 0 for a CPU build.
    runtime_overhead_mib: int
    memory_total_mib: int | None = None
    description: str = ""

    @classmethod
    def from_mapping(cls, name: str, raw: dict[str, Any]) -> DeviceProfile:
        try:
            mem_available = raw.get("mem_available_mib")
            return cls(
                name=name,
                mem_available_mib=None if mem_available is None else int(mem_available),
                bandwidth_gb_s=float(raw["bandwidth_gb_s"]),
                os_reserve_mib=int(raw["os_reserve_mib"]),
                runtime_overhead_mib=int(raw.get("runtime_overhead_mib", 0)),
                memory_total_mib=(
                    int(raw["memory_total_mib"]) if raw.get("memory_total_mib") else None
                ),
                description=str(raw.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FitInputError(f"device profile {name!r}: missing or invalid {exc}") from exc


@dataclass(frozen=True)
class ModelShape:
    """What the fit needs from a GGUF header."""

    path: str
    architecture: str
    n_layers: int
    n_head: int
    n_kv_heads: int
    key_length: int
    value_length: int
    n_embd: int
    n_ff: int
    n_vocab: int
    weights_bytes: int

    @classmethod
    def from_header(cls, header: GGUFHeader) -> ModelShape:
        def need(key: str) -> int:
            value = header.arch_value(key)
            if value is None:
                raise FitInputError(
                    f"{header.path}: GGUF header has no {header.architecture}.{key}"
                )
            # Per-layer arrays (some archs vary heads by layer): size for the largest layer.
            return max(value) if isinstance(value, list) else int(value)

        n_embd = need("embedding_length")
        n_head = need("attention.head_count")
        head_count_kv = header.arch_value("attention.head_count_kv")
        if isinstance(head_count_kv, list):
            head_count_kv = max(head_count_kv)
        n_kv_heads = int(head_count_kv) if head_count_kv is not None else n_head
        head_dim = n_embd // n_head
        key_length = header.arch_value("attention.key_length")
        value_length = header.arch_value("attention.value_length")
        n_vocab = header.arch_value("vocab_size") or header.metadata.get("tokenizer.ggml.tokens")
        if not isinstance(n_vocab, int):
            token_embd = next((t for t in header.tensors if t.name == "token_embd.weight"), None)
            n_vocab = token_embd.shape[-1] if token_embd else 0
        return cls(
            path=str(header.path),
            architecture=header.architecture,
            n_layers=need("block_count"),
            n_head=n_head,
            n_kv_heads=n_kv_heads,
            key_length=int(key_length) if key_length else head_dim,
            value_length=int(value_length) if value_length else head_dim,
            n_embd=n_embd,
            n_ff=need("feed_forward_length"),
            n_vocab=int(n_vocab),
            weights_bytes=header.tensor_data_bytes,
        )

    def kv_bytes_per_token(self, kv_type: str) -> float:
        """K and V for every layer: layers × KV heads × (key + value dims) × bytes/element."""
        per_element = KV_TYPE_BYTES[kv_type]
        return self.n_layers * self.n_kv_heads * (self.key_length + self.value_length) * per_element


@dataclass(frozen=True)
class FitConfig:
    ctx_per_slot: int = 2048
    parallel: int = 8
    kv_type: str = "f16"
    ubatch: int = 256
    stt_budget_mib: int = 700
    tts_budget_mib: int = 250
    min_ctx_per_slot: int = DEFAULT_MIN_CTX_PER_SLOT
    headroom_fraction: float = DEFAULT_HEADROOM_FRACTION

    def __post_init__(self) -> None:
        if self.kv_type not in KV_TYPE_BYTES:
            raise FitInputError(
                f"kv_type {self.kv_type!r} is not one of {', '.join(KV_TYPE_BYTES)}"
            )
        if self.ctx_per_slot < 1 or self.parallel < 1 or self.ubatch < 1:
            raise FitInputError("ctx_per_slot, parallel and ubatch must be positive")

    @property
    def n_ctx(self) -> int:
        """What llama-server gets as -c: it splits -c across the -np slots."""
        return self.ctx_per_slot * self.parallel


def compute_buffer_bytes(model: ModelShape, config: FitConfig) -> int:
    """Estimate llama.cpp's compute buffers for one micro-batch (flash attention on).

    The graph allocator reuses memory, so the peak is about one ubatch of logits (f32 ×
    vocab) plus the widest activations (FFN gate+up, a few n_embd-wide tensors), plus the
    host-side output buffer for one logit row per slot and a fixed slack for small graphs.
    With flash attention the KQ matrix is never materialised, so n_ctx does not appear.
    """
    per_token = 4 * (model.n_vocab + 2 * model.n_ff + 4 * model.n_embd)
    outputs = 4 * model.n_vocab * config.parallel
    return config.ubatch * per_token + outputs + 64 * MIB


@dataclass
class FitReport:
    model: ModelShape
    profile: DeviceProfile
    config: FitConfig
    mem_available_bytes: int
    mem_source: str
    kv_per_token_bytes: float
    items: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.items.values())

    @property
    def usable_bytes(self) -> int:
        return int(self.mem_available_bytes * (1 - self.config.headroom_fraction))

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.usable_bytes

    @property
    def roofline_tok_s(self) -> float:
        return self.profile.bandwidth_gb_s * 1e9 / self.model.weights_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "fits": self.fits,
            "model": asdict(self.model),
            "profile": asdict(self.profile),
            "config": {**asdict(self.config), "n_ctx": self.config.n_ctx},
            "kv_per_token_bytes": self.kv_per_token_bytes,
            "items_bytes": self.items,
            "total_bytes": self.total_bytes,
            "mem_available_bytes": self.mem_available_bytes,
            "mem_source": self.mem_source,
            "usable_bytes": self.usable_bytes,
            "headroom_bytes": self.usable_bytes - self.total_bytes,
            "decode_roofline_tok_s": round(self.roofline_tok_s, 1),
            "warnings": self.warnings,
            "suggestions": self.suggestions,
        }

    def render(self) -> str:
        m, c = self.model, self.config
        lines = [
            f"model      {Path(m.path).name}: {m.architecture}, {m.n_layers} layers, "
            f"{m.n_kv_heads} KV heads × {m.key_length} dims, vocab {m.n_vocab}",
            f"device     {self.profile.name}"
            + (f" ({self.profile.description})" if self.profile.description else ""),
            f"config     ctx_per_slot {c.ctx_per_slot} × parallel {c.parallel} = -c {c.n_ctx}, "
            f"KV {c.kv_type}, ubatch {c.ubatch}",
            "",
            f"  {'weights':<16}{_gb(self.items['weights'])}",
            f"  {'KV cache':<16}{_gib(self.items['kv_cache'])}  "
            f"{self.kv_per_token_bytes / 1024:g} KiB/token × {c.ctx_per_slot} × {c.parallel}",
            f"  {'compute':<16}{_gib(self.items['compute'])}  (estimate, ubatch {c.ubatch})",
            f"  {'GPU runtime':<16}{_gib(self.items['runtime'])}",
            f"  {'STT budget':<16}{_gib(self.items['stt'])}",
            f"  {'TTS budget':<16}{_gib(self.items['tts'])}",
            f"  {'OS reserve':<16}{_gib(self.items['os_reserve'])}",
            f"  {'total':<16}{_gib(self.total_bytes)}",
            f"  {'MemAvailable':<16}{_gib(self.mem_available_bytes)}  ({self.mem_source}; "
            f"{c.headroom_fraction:.0%} kept free → {_gib(self.usable_bytes).strip()} usable)",
            f"  {'headroom':<16}{_gib(self.usable_bytes - self.total_bytes)}",
            "",
            f"decode roofline  {self.profile.bandwidth_gb_s:g} GB/s / "
            f"{m.weights_bytes / 1e9:.2f} GB = {self.roofline_tok_s:.1f} tok/s per stream "
            "(upper bound: each token reads all weights)",
        ]
        lines += [f"WARNING: {w}" for w in self.warnings]
        if self.fits:
            lines.append(f"FITS: {_gib(self.usable_bytes - self.total_bytes).strip()} to spare")
        else:
            short = self.total_bytes - self.usable_bytes
            lines.append(
                f"DOES NOT FIT: needs {_gib(self.total_bytes).strip()}, "
                f"{_gib(self.usable_bytes).strip()} usable: short by {_gib(short).strip()}"
            )
            lines += [f"  - {s}" for s in self.suggestions]
        return "\n".join(lines)


def _gib(n: float) -> str:
    return f"{n / GIB:7.2f} GiB"


def _gb(n: float) -> str:
    return f"{n / GIB:7.2f} GiB  ({n / 1e9:.2f} GB)"


def check_fit(
    model: ModelShape,
    profile: DeviceProfile,
    config: FitConfig,
    mem_available_bytes: int,
    mem_source: str,
) -> FitReport:
    kv_per_token = model.kv_bytes_per_token(config.kv_type)
    items = {
        "weights": model.weights_bytes,
        "kv_cache": int(kv_per_token * config.n_ctx),
        "compute": compute_buffer_bytes(model, config),
        "runtime": profile.runtime_overhead_mib * MIB,
        "stt": config.stt_budget_mib * MIB,
        "tts": config.tts_budget_mib * MIB,
        "os_reserve": profile.os_reserve_mib * MIB,
    }
    report = FitReport(model, profile, config, mem_available_bytes, mem_source, kv_per_token, items)
    if config.ctx_per_slot < config.min_ctx_per_slot:
        report.warnings.append(
            f"ctx_per_slot {config.ctx_per_slot} is below the {config.min_ctx_per_slot} tokens "
            "a voice conversation needs (system prompt + ~10 turns + a reply): longer "
            "conversations will be refused by llama-server (HTTP 400, context exceeded)"
        )
    if not report.fits:
        report.suggestions = _suggestions(report)
    return report


def _suggestions(report: FitReport) -> list[str]:
    model, config = report.model, report.config
    short = report.total_bytes - report.usable_bytes
    kv_room = report.items["kv_cache"] - short  # what KV may take and still fit
    out: list[str] = []
    if config.kv_type in ("f16", "bf16", "f32"):
        saved = report.items["kv_cache"] - int(model.kv_bytes_per_token("q8_0") * config.n_ctx)
        enough = "enough" if saved >= short else "not enough alone"
        out.append(
            f"KV cache q8_0 (llamacpp_kv_type: q8_0) saves {_gib(saved).strip()} ({enough}); "
            "measured −9–15% decode"
        )
    per_token = report.kv_per_token_bytes
    if kv_room > 0:
        max_ctx = int(kv_room / (per_token * config.parallel)) // 256 * 256
        if max_ctx >= 256:
            out.append(
                f"lower ctx_per_slot to {max_ctx} at parallel {config.parallel} "
                f"(-c {max_ctx * config.parallel})"
            )
        max_parallel = int(kv_room / (per_token * config.ctx_per_slot))
        if max_parallel >= 1:
            out.append(
                f"lower parallel to {max_parallel} at ctx_per_slot {config.ctx_per_slot} "
                f"(-c {max_parallel * config.ctx_per_slot})"
            )
    if kv_room <= per_token * 256:
        out.append(
            f"the model's weights ({model.weights_bytes / 1e9:.2f} GB) leave no room for a "
            "useful KV cache: use a smaller model or a smaller quantization"
        )
    else:
        out.append("or use a smaller model / quantization, or free memory on the unit")
    return out
