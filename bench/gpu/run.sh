#!/usr/bin/env bash
# The GPU proof, on any x86_64 box with an NVIDIA GPU, CUDA (nvcc), CMake and python3 3.12 with
# numpy, httpx and PyYAML. Nothing is fetched there: the llama.cpp source and the service's
# wheels (pure-Python, and aiohttp's compiled for CPython 3.12) travel with the repo
# (bench/gpu/stage.sh makes them, here in .gpu/).
#
#   bench/gpu/run.sh start            build + model in the background (resumable), returns
#   bench/gpu/run.sh wait [SECONDS]   wait for them, printing progress
#   bench/gpu/run.sh bench OUT_DIR    all measurements -> OUT_DIR/*.json (prepares if needed;
#                                     ROUNDS=N interleaved rounds, default 5)
#   bench/gpu/run.sh followup OUT_DIR only the follow-up turns, with llama-server's timings
#   bench/gpu/run.sh kv OUT_DIR       per-slot KV (the role) vs one unified pool
#                                     (orin_nx_16gb.kv_unified.args.json), one run
#
# What it runs, all with the project's own code and configuration:
# - llama.cpp built by scripts/build_llama_server.sh with the llamacpp role's `jetson` build
#   profile, CMAKE_CUDA_ARCHITECTURES set to this GPU's arch instead of 87;
# - a shape-equivalent Llama-3.2-3B Q4_K_M (tools/shape_model.py + llama-quantize);
# - llama-server with exactly the arguments the role renders for an Orin NX 16GB unit
#   (docs/results/gpu/orin_nx_16gb.args.json; only --model points at the shape model);
# - the voice service (`voicefleet serve`, llm.backend server, stt/tts disabled) in front;
# - `voicefleet bench` against both in one run; flash attention on vs off; the field
#   config's `-c 2048 -np 8` vs the role's; (kv) per-slot vs unified KV cache.
# env: WORK (default /root/vfgpu), CUDA_ARCH (default: the GPU's compute capability),
#      SRC (default .gpu/llama_cpp_python-*.tar.gz), WHEELS (default .gpu/whl), QUICK=1 (fewer rounds)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
WORK=${WORK:-/root/vfgpu}
SRC=${SRC:-$(echo "$here"/.gpu/llama_cpp_python-*.tar.gz)}
WHEELS=${WHEELS:-$here/.gpu/whl}
MODEL=$WORK/shape-llama-3.2-3b-q4_k_m.gguf
ARGS_JSON=$here/docs/results/gpu/orin_nx_16gb.args.json
# the same render with llamacpp_kv_unified=true: the other KV layout, compared in one run
ARGS_KVU_JSON=$here/docs/results/gpu/orin_nx_16gb.kv_unified.args.json
LLAMA_API_KEY=gpu-bench-llama-key-0123456789
export LLAMA_API_KEY
mkdir -p "$WORK"
export PYTHONPATH="$WORK/site:$here" PYTHONUNBUFFERED=1

log() { printf '%s %s\n' "$(date +%T)" "$*" | tee -a "$WORK/steps.log"; }

cuda_arch() {
  if [[ -n ${CUDA_ARCH:-} ]]; then echo "$CUDA_ARCH"; return; fi
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .
}

build_flags() {
  # the role's jetson profile, this GPU's arch instead of 87
  python3 - "$here/roles/llamacpp/defaults/main.yml" "$(cuda_arch)" <<'PY'
import sys, yaml
flags = yaml.safe_load(open(sys.argv[1]))["llamacpp_build_profiles"]["jetson"]
print("\n".join(f.replace("ARCHITECTURES=87", "ARCHITECTURES=" + sys.argv[2]) for f in flags))
PY
}

prepare() {
  rm -f "$WORK/prepared" "$WORK/failed"
  trap 'touch "$WORK/failed"' ERR
  log "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader)"
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$WORK/site" \
    "$WHEELS"/*.whl
  mapfile -t flags < <(build_flags)
  log "build: ${flags[*]}"
  BUILD_ROOT=$WORK/build EXTRA_TARGETS=llama-quantize \
    "$here/scripts/build_llama_server.sh" "$SRC" "$WORK/artifact" "${flags[@]}"
  log "built: $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["build_key"], m["build_seconds"], "s")' "$WORK/artifact/manifest.json")"
  if [[ ! -f $MODEL ]]; then
    tar xzf "$SRC" -C "$WORK" --wildcards '*/vendor/llama.cpp/gguf-py/*'
    # the benches' own prompts, so they tokenize at about a token per word
    python3 -c 'from app.bench.followup import SYSTEM, ASK, FOLLOW_UP
from app.bench.load import PROMPT
from app.settings import LLMSettings
print(SYSTEM, ASK, FOLLOW_UP, PROMPT, LLMSettings().system_prompt)' >"$WORK/words.txt"
    log "shape model (F16)"
    python3 "$here/tools/shape_model.py" "$WORK/shape-f16.gguf" \
      --gguf-py "$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp/gguf-py)" \
      --words-file "$WORK/words.txt" >/dev/null
    log "quantize Q4_K_M"
    "$WORK/artifact/bin/llama-quantize" "$WORK/shape-f16.gguf" "$MODEL.tmp" Q4_K_M "$(nproc)" \
      >"$WORK/quantize.log" 2>&1
    mv "$MODEL.tmp" "$MODEL"
    rm -f "$WORK/shape-f16.gguf"
  fi
  log "model: $(stat -c %s "$MODEL") bytes"
  touch "$WORK/prepared"
}

wait_prepared() {
  local limit=${1:-600} waited=0
  until [[ -f $WORK/prepared ]]; do
    [[ -f $WORK/failed ]] && { tail -n 30 "$WORK/prepare.log"; exit 1; }
    ((waited < limit)) || { tail -n 3 "$WORK/prepare.log"; tail -n 2 "$WORK/build/build.log" 2>/dev/null; return 2; }
    sleep 10
    waited=$((waited + 10))
  done
  tail -n 5 "$WORK/steps.log"
}

start_llama() {  # start_llama LOG [arg overrides as NAME=VALUE...]; LLAMA_ARGS: args file
  local logf=$1
  shift
  mapfile -t args < <(python3 - "${LLAMA_ARGS:-$ARGS_JSON}" "$MODEL" "$@" <<'PY'
import json, sys
args = json.load(open(sys.argv[1]))["args"]
args[args.index("--model") + 1] = sys.argv[2]
for override in sys.argv[3:]:
    name, value = override.split("=", 1)
    args[args.index(name) + 1] = value
print("\n".join(args))
PY
)
  echo "llama-server ${args[*]}" >"$logf"
  "$WORK/artifact/bin/llama-server" "${args[@]}" >>"$logf" 2>&1 &
  echo $! >"$WORK/llama.pid"
  wait_url http://127.0.0.1:8080/health 180
}

stop_llama() {
  [[ -f $WORK/llama.pid ]] || return 0
  kill "$(cat "$WORK/llama.pid")" 2>/dev/null || true
  while kill -0 "$(cat "$WORK/llama.pid")" 2>/dev/null; do sleep 0.5; done
  rm -f "$WORK/llama.pid"
}

wait_url() {
  local url=$1 limit=$2
  for _ in $(seq "$limit"); do
    python3 -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)' "$url" \
      2>/dev/null && return 0
    sleep 1
  done
  echo "$url did not answer in ${limit}s" >&2
  return 1
}

start_service() {  # start_service PORT LOG [ENV=VALUE...]
  local port=$1 logf=$2
  shift 2
  env VOICEFLEET_STT__ENABLED=false VOICEFLEET_TTS__ENABLED=false \
    VOICEFLEET_LLM__BACKEND=server VOICEFLEET_LLM__SERVER_URL=http://127.0.0.1:8080 \
    VOICEFLEET_LLM__SERVER_API_KEY="$LLAMA_API_KEY" \
    VOICEFLEET_LLM__MODEL_NAME=llama-3.2-3b-instruct \
    VOICEFLEET_LLM__PARALLEL=8 VOICEFLEET_LLM__CTX_PER_SLOT=2048 "$@" \
    python3 -m app.cli serve --port "$port" >"$logf" 2>&1 &
  echo $! >>"$WORK/service.pids"
  wait_url "http://127.0.0.1:$port/readyz" 120
}

server_timings() {  # what llama-server says of each task: slot choice, prompt and decode time
  grep -E "selected slot|prompt eval time|       eval time|cache|restor|sav" "$1" | tail -n 2000 || true
}

server_memory() {  # what llama-server allocated (KV, compute buffers) and how it sized slots
  grep -E "KV self size|KV buffer|CUDA0 (model|KV|compute) buffer|n_ctx|n_slots|kv_unified" \
    "$1" | head -n 24 || true
}

followup_probe() {  # only the follow-up measurement, with llama-server's own account of it
  local out=${1:?out dir}
  mkdir -p "$out"
  [[ -f $WORK/prepared ]] || prepare
  : >"$WORK/service.pids"
  trap 'stop_llama; xargs -r kill <"$WORK/service.pids" 2>/dev/null || true' EXIT
  start_llama "$WORK/server_probe.log"
  start_service 8000 "$WORK/service.log"
  python3 -m app.cli bench --url http://127.0.0.1:8000 --llm-url http://127.0.0.1:8080 \
    --clients 1 --requests 1 --max-tokens 16 --rounds 1 --voice-turns 0 --followup \
    --followup-rounds "${ROUNDS:-2}" --json "$out/followup_probe.json"
  server_timings "$WORK/server_probe.log" >"$out/server_probe_timings.txt"
  stop_llama
}

machine_json() {  # the GPU, CUDA, the build and the model a run used
  python3 - "$1" "$WORK/artifact/manifest.json" "$MODEL" <<'PY'
import importlib.util, json, os, platform, subprocess, sys
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                      "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip()
json.dump({"gpu": smi, "nvcc": nvcc.splitlines()[-1], "cpus": os.cpu_count(),
           "python": platform.python_version(), "kernel": platform.release(),
           "build": json.load(open(sys.argv[2])), "model_bytes": os.path.getsize(sys.argv[3]),
           # what uvicorn runs the service on ("auto": uvloop and httptools when importable)
           "service_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
           "service_http": "httptools" if importlib.util.find_spec("httptools") else "h11"},
          open(sys.argv[1], "w"), indent=2)
PY
}

bench() {
  local out=${1:?out dir}
  mkdir -p "$out"
  [[ -f $WORK/prepared ]] || prepare
  local rounds=${ROUNDS:-5} requests=4
  [[ ${QUICK:-0} == 1 ]] && rounds=1 requests=2
  machine_json "$out/machine.json"
  log "llama-bench: flash attention off/on"
  "$WORK/artifact/bin/llama-bench" -m "$MODEL" -ngl 99 -fa 0,1 -p 512 -n 128 -b 512 -ub 256 \
    -r "$rounds" -o json >"$out/llama_bench.json" 2>"$WORK/llama_bench.err"

  : >"$WORK/service.pids"
  trap 'stop_llama; xargs -r kill <"$WORK/service.pids" 2>/dev/null || true' EXIT
  log "llama-server as the role runs it (flash attention on) + the service in front"
  start_llama "$WORK/server_fa_on.log"
  start_service 8000 "$WORK/service.log"
  start_service 8001 "$WORK/service_nocache.log" VOICEFLEET_LLM__CACHE_PROMPT=false
  python3 -m app.cli bench --url http://127.0.0.1:8000 --llm-url http://127.0.0.1:8080 \
    --clients 1,2,4,8 --requests "$requests" --max-tokens 128 --rounds "$rounds" \
    --voice-turns 0 --followup --followup-rounds "$rounds" \
    --followup-nocache-url http://127.0.0.1:8001 --json "$out/bench_fa_on.json"
  server_memory "$WORK/server_fa_on.log" >"$out/server_memory.txt"
  server_timings "$WORK/server_fa_on.log" >"$out/server_timings.txt"
  stop_llama

  log "flash attention off (the same arguments otherwise)"
  start_llama "$WORK/server_fa_off.log" --flash-attn=off
  python3 -m app.cli bench --url http://127.0.0.1:8000 --llm-url http://127.0.0.1:8080 \
    --clients 1,8 --requests "$requests" --max-tokens 128 --rounds "$rounds" \
    --voice-turns 0 --json "$out/bench_fa_off.json"
  stop_llama

  log "context: the field config (-c 2048 -np 8) vs the role's (-c 16384 -np 8)"
  local results=()
  for ctx in 2048 16384; do
    start_llama "$WORK/server_ctx_$ctx.log" -c=$ctx
    results+=("$ctx=$(python3 "$here/bench/gpu/context_check.py" http://127.0.0.1:8000)")
    stop_llama
  done
  python3 - "$out/context.json" "${results[@]}" <<'PY'
import json, sys
rows = []
for item in sys.argv[2:]:
    ctx, result = item.split("=", 1)
    rows.append({"args": f"-c {ctx} -np 8", **json.loads(result)})
json.dump(rows, open(sys.argv[1], "w"), indent=2)
print(json.dumps(rows, indent=2))
PY
  log "bench done"
}

kv_compare() {  # per-slot KV (the role) vs one unified pool: clients 1 and 8, follow-up turns
  local out=${1:?out dir} rounds=${ROUNDS:-3}
  mkdir -p "$out"
  [[ -f $WORK/prepared ]] || prepare
  machine_json "$out/machine.json"
  : >"$WORK/service.pids"
  : >"$out/server_memory.txt"
  : >"$out/server_timings.txt"
  trap 'stop_llama; xargs -r kill <"$WORK/service.pids" 2>/dev/null || true' EXIT
  start_llama "$WORK/server_per_slot.log"
  start_service 8000 "$WORK/service.log"
  for layout in per_slot unified; do
    [[ $layout == per_slot ]] || LLAMA_ARGS=$ARGS_KVU_JSON start_llama "$WORK/server_$layout.log"
    log "KV layout: $layout"
    python3 -m app.cli bench --url http://127.0.0.1:8000 --llm-url http://127.0.0.1:8080 \
      --clients 1,8 --requests 4 --max-tokens 128 --rounds "$rounds" --voice-turns 0 \
      --followup --followup-rounds "$rounds" --json "$out/$layout.json"
    stop_llama
    { echo "## server_$layout.log"; server_memory "$WORK/server_$layout.log"; } >>"$out/server_memory.txt"
    { echo "## server_$layout.log"; server_timings "$WORK/server_$layout.log"; } >>"$out/server_timings.txt"
  done
}

case ${1:-} in
  start)
    rm -f "$WORK/prepared" "$WORK/failed"
    setsid nohup "$0" prepare >"$WORK/prepare.log" 2>&1 </dev/null &
    echo "preparing in the background (log: $WORK/prepare.log)"
    ;;
  prepare) prepare ;;
  wait) wait_prepared "${2:-600}" ;;
  bench) bench "${2:?out dir}" ;;
  followup) followup_probe "${2:?out dir}" ;;
  kv) kv_compare "${2:?out dir}" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
