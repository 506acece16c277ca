#!/usr/bin/env bash
# Wyoming latency, ours vs the reference servers, in one run on this machine:
#   voicefleet (its Wyoming server: wyoming.enabled)  vs  wyoming-faster-whisper (STT)
#                                                     and wyoming-piper (TTS)
# on the same model files ($VOICEFLEET_HOME/models/current: the PyPI-packaged whisper-tiny.en
# CTranslate2 directory and piper voice that `make setup` installs), the same engine versions
# and the same thread counts. The reference servers live in their own venv with pinned
# versions (scripts/bench_wyoming_ref.txt), created here under $VOICEFLEET_HOME, never in .venv.
# All three listen on loopback only. Prints the figures and writes the JSON report.
#
#   scripts/bench_wyoming.sh [--rounds N] [--json FILE]
#   (default: 5 rounds, docs/results/wyoming/bench_cpu.json)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vf_home=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
models=$vf_home/models/current
rounds=5
json=docs/results/wyoming/bench_cpu.json
threads=${BENCH_THREADS:-$(nproc)}
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--json FILE]" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1m[bench-wyoming]\033[0m %s\n' "$*"; }

stt_dir=$models/stt
voice=$(compgen -G "$models/tts/*.onnx" | head -n1 || true)
gguf=$(compgen -G "$models/llm/*.gguf" | head -n1 || true)
[[ -f $stt_dir/model.bin && -n $voice && -n $gguf ]] \
  || { echo "models missing under $models: run \`make setup\`" >&2; exit 1; }

# --- the reference servers' venv (pinned; rebuilt when the pins change) --------------------
ref=$vf_home/wyoming-ref
pins=scripts/bench_wyoming_ref.txt
pins_sum=$(sha256sum "$pins" | cut -d' ' -f1)
python=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')/bin/python3
if [[ $(cat "$ref/venv/.pins" 2>/dev/null) != "$pins_sum" ]]; then
  log "reference venv: installing $pins into $ref/venv"
  rm -rf "$ref/venv"
  "$python" -m venv "$ref/venv"
  "$ref/venv/bin/pip" install -q --disable-pip-version-check -r "$pins" \
    2> >(grep -v '^WARNING: Location' >&2)
  echo "$pins_sum" > "$ref/venv/.pins"
fi

# --- the three servers, on free loopback ports ---------------------------------------------
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ours_http=$(port); ours=$(port); stt_ref=$(port); tts_ref=$(port)

cat > "$work/voicefleet.yaml" <<EOF
server: {host: 127.0.0.1, port: $ours_http, log_level: warning}
stt: {model_dir: "$stt_dir", model_name: whisper-tiny.en, beam_size: 1, compute_type: int8,
      cpu_threads: $threads, language: en}
tts: {voice_path: "$voice", voice_name: default}
llm: {backend: embedded, model_path: "$gguf", model_name: bench-llm, threads: $threads,
      ctx_per_slot: 1024, parallel: 1, max_tokens_cap: 256, default_max_tokens: 64}
wyoming: {enabled: true, host: 127.0.0.1, port: $ours}
EOF
log "starting voicefleet (Wyoming on $ours), wyoming-faster-whisper ($stt_ref), wyoming-piper ($tts_ref)"
.venv/bin/voicefleet serve --config "$work/voicefleet.yaml" > "$work/voicefleet.log" 2>&1 &
pids+=($!)
"$ref/venv/bin/wyoming-faster-whisper" --uri "tcp://127.0.0.1:$stt_ref" \
  --model "$stt_dir" --data-dir "$work" --stt-library faster-whisper --language en \
  --beam-size 1 --compute-type int8 --cpu-threads "$threads" --local-files-only \
  > "$work/faster-whisper.log" 2>&1 &
pids+=($!)
"$ref/venv/bin/wyoming-piper" --uri "tcp://127.0.0.1:$tts_ref" \
  --voice "$voice" --data-dir "$(dirname "$voice")" > "$work/piper.log" 2>&1 &
pids+=($!)

if ! .venv/bin/voicefleet bench-wyoming --ours "tcp://127.0.0.1:$ours" \
    --stt-ref "tcp://127.0.0.1:$stt_ref" --tts-ref "tcp://127.0.0.1:$tts_ref" \
    --rounds "$rounds" --json "$json"; then
  for f in "$work"/*.log; do echo "--- $f"; tail -n 20 "$f"; done >&2
  exit 1
fi
