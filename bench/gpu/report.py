"""Turn the GPU proof's raw results (docs/results/gpu/*.json, written by bench/gpu/run.sh) and
the CPU speech stage costs (docs/results/cpu/voice_stages.json) into the tables between the
`gpu-results` markers in docs/benchmarks.md and the plots beside the results.

usage: python3 bench/gpu/report.py [--check]     (--check: exit 1 if the docs are stale)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "gpu"
CPU = ROOT / "docs" / "results" / "cpu" / "voice_stages.json"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gpu-results:begin -->", "<!-- gpu-results:end -->"
PROFILES = ROOT / "inventory" / "example" / "group_vars" / "all" / "device_profiles.yml"


def load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def llm_table(on: dict[str, Any], off: dict[str, Any]) -> list[str]:
    lines = [
        _row(
            [
                "flash attention",
                "target",
                "clients",
                "TTFT p50 (ms)",
                "TTFT p95 (ms)",
                "tok/s per stream p50",
                "aggregate tok/s",
                "errors",
            ]
        ),
        _row(["---"] * 3 + ["---:"] * 5),
    ]
    for label, report in (("on", on), ("off", off)):
        for r in sorted(report["llm"], key=lambda r: (r["clients"], r["target"])):
            lines.append(_row([label, r["target"], r["clients"], r["ttft_p50_ms"],
                               r["ttft_p95_ms"], r["stream_tps_p50"], r["aggregate_tps"],
                               r["errors"]]))  # fmt: skip
    return lines


def ratio_table(on: dict[str, Any], off: dict[str, Any]) -> list[str]:
    lines = [
        _row(
            [
                "flash attention",
                "clients",
                "service/raw aggregate tok/s (median of rounds)",
                "TTFT added p50 (ms)",
                "goal (≥ 0.98, ≤ +5 ms)",
            ]
        ),
        _row(["---", "---:", "---:", "---:", "---"]),
    ]
    for label, report in (("on", on), ("off", off)):
        for r in report["ratios"]:
            # issue #19's goal: aggregate >= 0.98 at every client count, TTFT added <= 5 ms
            ok = r["aggregate_tps_ratio"] >= 0.98 and r["ttft_added_p50_ms"] <= 5
            lines.append(_row([label, r["clients"], f"{r['aggregate_tps_ratio']:.3f}",
                               f"{r['ttft_added_p50_ms']:+.1f}",
                               "met" if ok else "**short**"]))  # fmt: skip
    return lines


def followup_table(after: dict[str, Any], before: dict[str, Any]) -> list[str]:
    lines = [
        _row(["llama-server host prompt cache", "target", "turn-1 prompt tokens",
              "turn-1 first token p50 (ms)", "turn-2 first token p50 (ms)", "turn 2 / turn 1"]),
        _row(["---", "---", "---:", "---:", "---:", "---:"]),
    ]  # fmt: skip
    for label, report in (("off (`--cache-ram 0`, the role)", after),
                          ("on (upstream default)", before)):  # fmt: skip
        for r in report["followup"]:
            lines.append(_row([label, r["target"], int(r["turn1_prompt_tokens_p50"]),
                               r["turn1_first_token_p50_ms"], r["turn2_first_token_p50_ms"],
                               f"{r['ratio_p50']:.3f}"]))  # fmt: skip
    return lines


def kv_layout_tables(per_slot: dict[str, Any], unified: dict[str, Any]) -> list[str]:
    layouts = (("per-slot (`--no-kv-unified`, the role)", per_slot),
               ("unified (`--kv-unified --kv-unified-per-slot 2048`)", unified))  # fmt: skip
    lines = [
        _row(["KV cache", "target", "clients", "TTFT p50 (ms)", "TTFT p95 (ms)",
              "aggregate tok/s"]),
        _row(["---", "---", "---:", "---:", "---:", "---:"]),
    ]  # fmt: skip
    for label, report in layouts:
        for r in sorted(report["llm"], key=lambda r: (r["clients"], r["target"])):
            lines.append(_row([label, r["target"], r["clients"], r["ttft_p50_ms"],
                               r["ttft_p95_ms"], r["aggregate_tps"]]))  # fmt: skip
    lines += [
        "",
        _row(["KV cache", "target", "turn-1 first token p50 (ms)",
              "turn-2 first token p50 (ms)", "turn 2 / turn 1",
              "llama-server's turn-2 prefill (tokens, ms)"]),
        _row(["---", "---", "---:", "---:", "---:", "---:"]),
    ]  # fmt: skip
    for label, report in layouts:
        for r in report["followup"]:
            prefill = (f"{r['turn2_server_prompt_n_p50']:.0f}, {r['turn2_server_prompt_ms_p50']}"
                       if "turn2_server_prompt_n_p50" in r else "")  # fmt: skip
            lines.append(_row([label, r["target"], r["turn1_first_token_p50_ms"],
                               r["turn2_first_token_p50_ms"], f"{r['ratio_p50']:.3f}",
                               prefill]))  # fmt: skip
    return lines


def llama_bench_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [_row(["flash attention", "test", "tok/s", "± sd"])]
    lines.append(_row(["---", "---", "---:", "---:"]))
    for r in rows:
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        lines.append(_row(["on" if r["flash_attn"] else "off", test, round(r["avg_ts"], 1),
                           round(r["stddev_ts"], 1)]))  # fmt: skip
    return lines


def context_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        _row(["llama-server", "path", "HTTP", "prompt tokens", "answer"]),
        _row(["---", "---", "---:", "---:", "---"]),
    ]
    for r in rows:
        for path in ("service", "llama_server"):
            a = r[path]
            answer = a["error_code"] or "served"
            if a["error"]:
                answer += f": {a['error'][:110]}…"
            lines.append(_row([f"`{r['args']}`", path.replace("_", "-"), a["status"],
                               a["prompt_tokens"] or "", answer]))  # fmt: skip
    return lines


def orin_estimate(machine: dict[str, Any], on: dict[str, Any]) -> list[str]:
    profile = yaml.safe_load(PROFILES.read_text())["device_profiles"]["orin_nx_16gb"]
    bw = float(profile["bandwidth_gb_s"])
    weights_gb = machine["model_bytes"] / 1e9
    # per decode step: the weights once, plus each stream's KV cache (112 KiB/token for
    # Llama 3.2 3B f16: 28 layers x 2 x 8 KV heads x 128 x 2 bytes) at ~500 tokens
    kv_gb = 28 * 2 * 8 * 128 * 2 * 500 / 1e9
    one = bw / (weights_gb + kv_gb)
    eight = bw / (weights_gb + 8 * kv_gb)
    h100 = {(r["target"], r["clients"]): r for r in on["llm"]}
    h100_bw = 3350.0
    h100_one = h100_bw / (weights_gb + kv_gb)
    eff = h100[("llama-server", 1)]["stream_tps_p50"] / h100_one
    return [
        _row(["figure", "Orin NX 16GB bound (derived)", "field target"]),
        _row(["---", "---:", "---"]),
        _row(["decode, 1 stream", f"{one:.1f} tok/s", "15–20 tok/s"]),
        _row(
            [
                "decode, each of 8 streams",
                f"{eight:.1f} tok/s ({8 * eight:.0f} aggregate)",
                "15–20 tok/s each",
            ]
        ),
        "",
        f"Bounds = memory bandwidth ({bw:g} GB/s, device_profiles.yml) / bytes read per decode "
        f"step (weights {weights_gb:.2f} GB + {kv_gb * 1000:.0f} MB KV per ~500-token stream). "
        f"llama.cpp reaches a fraction of this: at 60–75% (typical of bandwidth-bound decode "
        f"on one device) a unit gives {0.6 * eight:.0f}–{0.75 * eight:.0f} tok/s per user with 8 "
        f"users, above the target. (The H100 single stream reached {eff:.0%} of its own bound: "
        "a 3B model is kernel-launch bound there, not bandwidth bound, so that ratio does not "
        "carry over.) These are estimates until a unit runs `voicefleet bench`.",
    ]


def voice_estimate(on: dict[str, Any], cpu: dict[str, Any]) -> list[str]:
    svc = {r["clients"]: r for r in on["llm"] if r["target"] == "service"}
    first_sentence_tokens = round(cpu["first_sentence_words"] * 1.3)
    lines = [
        _row(["clients", "STT (CPU, measured)", "LLM first token (GPU)",
              f"first sentence, {first_sentence_tokens} tokens (GPU)",
              "TTS first sentence (CPU, measured)", "speech in → first audio out"]),
        _row(["---:"] + ["---:"] * 5),
    ]  # fmt: skip
    for clients in (1, 8):
        r = svc[clients]
        sentence_ms = first_sentence_tokens / r["stream_tps_p50"] * 1000
        tts_ms = cpu["tts_first_sentence_ms_p50"]
        total = cpu["stt_ms_p50"] + r["ttft_p50_ms"] + sentence_ms + tts_ms
        lines.append(_row([clients, f"{cpu['stt_ms_p50']:.0f} ms", f"{r['ttft_p50_ms']:.0f} ms",
                           f"{sentence_ms:.0f} ms", f"{cpu['tts_first_sentence_ms_p50']:.0f} ms",
                           f"**{total:.0f} ms**"]))  # fmt: skip
    return lines


def plots(on: dict[str, Any], off: dict[str, Any], before: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for report, fa, style in ((on, "on", "-"), (off, "off", "--")):
        for target, marker in (("llama-server", "o"), ("service", "s")):
            rows = sorted((r for r in report["llm"] if r["target"] == target),
                          key=lambda r: r["clients"])  # fmt: skip
            ax.plot([r["clients"] for r in rows], [r["aggregate_tps"] for r in rows],
                    style, marker=marker, label=f"{target}, FA {fa}")  # fmt: skip
    ax.set(xlabel="concurrent clients", ylabel="aggregate tok/s", title="Throughput vs clients")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    data, labels = [], []
    for clients in sorted({r["clients"] for r in on["llm"]}):
        for target in ("llama-server", "service"):
            r = next(x for x in on["llm"] if x["clients"] == clients and x["target"] == target)
            data.append(r["ttft_ms"])
            labels.append(f"{'raw' if target == 'llama-server' else 'svc'}\n{clients}")
    ax.boxplot(data, tick_labels=labels, showfliers=True)
    ax.set(ylabel="TTFT (ms)", title="TTFT distribution (FA on; target / clients)")
    ax.grid(alpha=0.3, axis="y")

    ax = axes[2]
    levels = [r["clients"] for r in on["ratios"]]
    for report, fa, offset in ((on, "on", -0.2), (off, "off", 0.2)):
        ax.bar([levels.index(r["clients"]) + offset for r in report["ratios"]],
               [r["aggregate_tps_ratio"] for r in report["ratios"]], width=0.4,
               label=f"FA {fa}")  # fmt: skip
    ax.set_xticks(range(len(levels)), [str(x) for x in levels])
    ax.axhline(0.97, color="red", linestyle=":", label="goal 0.97")
    ax.set(xlabel="clients (FA off: 1 and 8)", ylabel="service / raw aggregate tok/s",
           ylim=(0.85, 1.05), title="What the service costs")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "gpu-service-vs-raw.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    names = [r["target"] for r in on["followup"]]
    width = 0.2
    for i, (report, label) in enumerate(((before, "cache-ram on"), (on, "cache-ram 0"))):
        for j, turn in enumerate(("turn1", "turn2")):
            values = [r[f"{turn}_first_token_p50_ms"] for r in report["followup"]]
            ax.bar([k + (2 * i + j - 1.5) * width for k in range(len(names))], values, width,
                   label=f"{turn.replace('turn', 'turn ')}, {label}")  # fmt: skip
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax.set(ylabel="first token p50 (ms)", title="Follow-up turns, 8 conversations (H100)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(RESULTS / "gpu-followup.png", dpi=110)
    plt.close(fig)


def section(on: dict[str, Any], off: dict[str, Any], before: dict[str, Any]) -> str:
    machine = load("machine.json")
    kv = {name: load(f"kv_layout/{name}.json") for name in ("per_slot", "unified")}
    kv_run = load("kv_layout/run.json")
    cpu = json.loads(CPU.read_text())
    build = machine["build"]
    settings = on["settings"]
    out = [
        BEGIN,
        "<!-- generated by bench/gpu/report.py from docs/results/gpu/*.json: do not edit -->",
        "",
        f"**Machine**: {machine['gpu']}; {machine['nvcc']}; {machine['cpus']} CPU cores; "
        f"Python {machine['python']}; the service on "
        f"{machine.get('service_loop', 'asyncio')} + {machine.get('service_http', 'h11')}. "
        f"**Build** `{build['build_key']}` in "
        f"{build['build_seconds']} s: `{' '.join(build['cmake_flags'][-4:])}`. "
        f"**Model**: {machine['model_bytes']:,} bytes (shape-equivalent Q4_K_M). "
        f"**Run**: {on['time']}, {settings['rounds']} interleaved rounds × "
        f"{settings['requests_per_client']} requests per client, {settings['max_tokens']} tokens "
        "out, temperature 0.",
        "",
        "llama-bench (`-ngl 99 -b 512 -ub 256`):",
        "",
        *llama_bench_table(load("llama_bench.json")),
        "",
        "Streaming chat, the same client against both in one run (median round):",
        "",
        *llm_table(on, off),
        "",
        *ratio_table(on, off),
        "",
        "Follow-up turns (8 conversations at once; turn 2 adds turn 1's reply and a question):",
        "",
        *followup_table(on, before),
        "",
        "KV cache layout, per-slot (the role) vs one unified pool, each slot capped at 2048 "
        f"tokens (`bench/gpu/run.sh kv`, {kv_run['rounds']} rounds, {kv['per_slot']['time']}):",
        "",
        *kv_layout_tables(kv["per_slot"], kv["unified"]),
        "",
        "The field config vs the role's (the follow-up bench's first turn):",
        "",
        *context_table(load("context.json")),
        "",
        "Voice turn estimate — speech stages measured on the CPU machine "
        f"({cpu['machine']}; {cpu['stt_model']}, {cpu['utterance_s']} s question; piper "
        f"{cpu['tts_voice']}), LLM stages on the GPU through the service; combined, not "
        "measured together:",
        "",
        *voice_estimate(on, cpu),
        "",
        "Expected on an Orin NX 16GB:",
        "",
        *orin_estimate(machine, on),
        "",
        "![service vs raw](results/gpu/gpu-service-vs-raw.png)",
        "![follow-up turns](results/gpu/gpu-followup.png)",
        END,
    ]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/benchmarks.md is stale")
    a = ap.parse_args()
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        print(f"{DOC}: no {BEGIN} … {END} markers", file=sys.stderr)
        return 2
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    on, off = load("bench_fa_on.json"), load("bench_fa_off.json")
    before = load("before_cache_ram_0/bench_fa_on.json")
    new = head + section(on, off, before) + tail
    if a.check:
        if new != doc:
            print("docs/benchmarks.md is stale: run python3 bench/gpu/report.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    plots(on, off, before)
    print(f"wrote {DOC} and {RESULTS}/gpu-*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
