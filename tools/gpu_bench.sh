#!/usr/bin/env bash
# Prove the CUDA build of the pinned llama.cpp on an x86_64 NVIDIA GPU machine and measure it:
# build llama-server/llama-bench/llama-quantize with the Jetson profile's flags (this GPU's
# arch instead of 87) through scripts/build_llama_server.sh, make a shape-equivalent
# Llama-3.2-3B Q4_K_M (tools/shape_model.py + llama-quantize), run llama-bench and a
# llama-server probe (-c 16384 -np 8, a >256-token prompt, 8 concurrent clients).
#
# usage: tools/gpu_bench.sh SDIST_TARBALL WORK_DIR [CUDA_ARCH]
# Writes WORK_DIR/{build.log,artifact/,bench.md,bench.json,server.log,probe.json,steps.log}.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sdist=${1:?sdist tarball}
work=${2:?work dir}
cuda_arch=${3:-90}
mkdir -p "$work"
steps="$work/steps.log"
step() { printf '%s %s\n' "$(date +%T)" "$*" | tee -a "$steps"; }

step "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
step "nvcc: $(nvcc --version | tail -n 2 | head -n 1)"
step "build start (CMAKE_CUDA_ARCHITECTURES=$cuda_arch)"
BUILD_ROOT="$work/build" EXTRA_TARGETS=llama-quantize \
  "$here/scripts/build_llama_server.sh" "$sdist" "$work/artifact" \
  -DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$cuda_arch" -DGGML_CUDA_FA=ON -DGGML_CUDA_NCCL=OFF
step "build done: $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["build_key"], m["build_seconds"], "s")' "$work/artifact/manifest.json")"
bin="$work/artifact/bin"

if [[ ! -f $work/shape-q4_k_m.gguf ]]; then
  tar xzf "$sdist" -C "$work" --wildcards '*/vendor/llama.cpp/gguf-py/*'
  gguf_py=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp/gguf-py)
  step "shape model (F16)"
  python3 "$here/tools/shape_model.py" "$work/shape-f16.gguf" --gguf-py "$gguf_py"
  step "quantize Q4_K_M"
  "$bin/llama-quantize" "$work/shape-f16.gguf" "$work/shape-q4_k_m.gguf" Q4_K_M "$(nproc)" \
    >"$work/quantize.log" 2>&1
  rm -f "$work/shape-f16.gguf"
fi
step "model: $(stat -c %s "$work/shape-q4_k_m.gguf") bytes"

step "llama-bench"
"$bin/llama-bench" -m "$work/shape-q4_k_m.gguf" -ngl 99 -fa 0,1 -p 512 -n 128 -b 512 -ub 256 \
  -o md >"$work/bench.md" 2>"$work/bench.err"
"$bin/llama-bench" -m "$work/shape-q4_k_m.gguf" -ngl 99 -fa 1 -p 512 -n 128 -b 512 -ub 256 \
  -ctk f16,q8_0 -ctv f16,q8_0 -o json >"$work/bench.json" 2>>"$work/bench.err"
cat "$work/bench.md" | tee -a "$steps"

step "llama-server -c 16384 -np 8"
"$bin/llama-server" -m "$work/shape-q4_k_m.gguf" -c 16384 -np 8 -b 512 -ub 256 -ngl 99 \
  -fa on --cont-batching --metrics --host 127.0.0.1 --port 8089 >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do
  python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8089/health", timeout=2)' \
    2>/dev/null && break
  sleep 1
done
python3 "$here/tools/server_probe.py" http://127.0.0.1:8089 --clients 8 --prompt-words 400 \
  --n-predict 128 >"$work/probe.json"
kill "$server"
wait "$server" || true
grep -E "buffer size|KV|n_ctx|n_seq|n_slots|flash" "$work/server.log" | head -n 30 >"$work/server_mem.txt" || true
cat "$work/probe.json" | tee -a "$steps"
step "all done"
