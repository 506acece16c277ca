#!/usr/bin/env bash
# Run the production shape on this machine, no fleet: llama-server (CPU build, the tuned
# flag set: -c ctx_per_slot*parallel -np parallel -b 512 -ub 256 -fa on --metrics, key from
# the environment) + the voice service with the `server` backend, then `voicefleet bench`
# against both in one run. Used for docs/benchmarks.md and as a quick local check.
# usage: scripts/local_stack.sh [OUT_JSON] [extra voicefleet bench args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vf_home=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
models=$vf_home/models/current
out=${1:-out/bench-local.json}
shift || true
ctx_per_slot=${CTX_PER_SLOT:-2048}
parallel=${PARALLEL:-8}
llm_port=${LLM_PORT:-18080}
svc_port=${SVC_PORT:-18000}
gguf=$(ls "$models"/llm/*.gguf | head -1)
voice=$(ls "$models"/tts/*.onnx | head -1)
export LLAMA_API_KEY=${LLAMA_API_KEY:-local-llama-key}
export VOICEFLEET_API_KEY=${VOICEFLEET_API_KEY:-local-service-key}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
mkdir -p out
"$vf_home/llama.cpp/cpu/bin/llama-server" -m "$gguf" --host 127.0.0.1 --port "$llm_port" \
  -c $((ctx_per_slot * parallel)) -np "$parallel" -b 512 -ub 256 -fa on -t "$(nproc)" \
  --metrics --no-webui --jinja >out/llama-server.log 2>&1 &
pids+=($!)
VOICEFLEET_LLM__BACKEND=server VOICEFLEET_LLM__SERVER_URL=http://127.0.0.1:$llm_port \
VOICEFLEET_LLM__SERVER_API_KEY=$LLAMA_API_KEY VOICEFLEET_LLM__MODEL_NAME=$(basename "$gguf" .gguf) \
VOICEFLEET_LLM__CTX_PER_SLOT=$ctx_per_slot VOICEFLEET_LLM__PARALLEL=$parallel \
VOICEFLEET_STT__MODEL_DIR=$models/stt VOICEFLEET_TTS__VOICE_PATH=$voice \
VOICEFLEET_SERVER__API_KEY=$VOICEFLEET_API_KEY \
  .venv/bin/voicefleet serve --port "$svc_port" >out/service.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$svc_port/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$svc_port/readyz" >/dev/null || { tail out/service.log; exit 1; }
.venv/bin/voicefleet bench --url "http://127.0.0.1:$svc_port" \
  --llm-url "http://127.0.0.1:$llm_port" --json "$out" "$@"
