#!/usr/bin/env bash
# Build, on the controller, everything a unit needs to install the voice service without a
# network or a compiler: the voicefleet wheel (`pip wheel --no-deps .`) and a wheelhouse of
# its pinned dependencies for the unit's platform. Units install with
# `pip install --no-index --find-links` (roles/voice_service); nothing is built on a unit.
#
#   scripts/build_wheelhouse.sh [OUT_ROOT]     (default $VOICEFLEET_HOME/wheelhouse)
#
# Cached and keyed: deps-<key>/ by a hash of the pins (pyproject dependencies + target platform),
# app-<key>/ by a hash of the package sources. A second run builds nothing. Prints one JSON
# line: {"key", "version", "app_dir", "deps_dir", "wheel", "changed"}; `key` names the unit's venv.
# Target: the controller's own platform by default (the simulated units: Debian 12 x86_64,
# CPython 3.11, like the controller). For other units set UNIT_PLATFORM (e.g.
# manylinux2014_aarch64) and UNIT_PYTHON_VERSION (e.g. 3.10 on JetPack 6): dependencies then
# come as binary wheels only (`pip download --only-binary`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vf_home=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
out=${1:-$vf_home/wheelhouse}
python=${PYTHON:-$root/.venv/bin/python}
platform=${UNIT_PLATFORM:-}
pyver=${UNIT_PYTHON_VERSION:-}
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

target=$("$python" -c 'import sys, sysconfig; print(sysconfig.get_platform(), sys.implementation.cache_tag)')
[[ -n $platform ]] && target="$platform cp${pyver//./}"
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
requirements=$("$python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
deps_key=$(printf '%s\n%s\npip-wheelhouse-v1\n' "$requirements" "$target" | sha256sum | cut -c1-16)
# The package as pip builds it: pyproject + every file under app/ that git tracks or would.
src_key=$( { cat pyproject.toml; git ls-files -co --exclude-standard app \
  | LC_ALL=C sort | while read -r f; do [[ -f $f ]] && printf '%s\n' "$f" && cat "$f"; done; } \
  | sha256sum | cut -c1-16)
key=$(printf '%s %s\n' "$deps_key" "$src_key" | sha256sum | cut -c1-16)
deps_dir=$out/deps-$deps_key
app_dir=$out/app-$src_key
changed=false

if [[ ! -f $deps_dir/.complete ]]; then
  changed=true
  rm -rf "$deps_dir.tmp" && mkdir -p "$deps_dir.tmp"
  printf '%s\n' "$requirements" >"$deps_dir.tmp/requirements.txt"
  if [[ -n $platform ]]; then
    "$python" -m pip download -q --only-binary=:all: --platform "$platform" \
      --python-version "$pyver" -r "$deps_dir.tmp/requirements.txt" -d "$deps_dir.tmp" pip
  else
    # pip wheel: binary wheels as published; anything only published as an sdist is built here,
    # once, on the controller.
    "$python" -m pip wheel -q -r "$deps_dir.tmp/requirements.txt" -w "$deps_dir.tmp" pip
  fi
  touch "$deps_dir.tmp/.complete"
  rm -rf "$deps_dir" && mv "$deps_dir.tmp" "$deps_dir"
fi

if [[ ! -f $app_dir/.complete ]]; then
  changed=true
  rm -rf "$app_dir.tmp" build && mkdir -p "$app_dir.tmp"
  "$python" -m pip wheel -q --no-deps . -w "$app_dir.tmp"
  rm -rf build
  touch "$app_dir.tmp/.complete"
  rm -rf "$app_dir" && mv "$app_dir.tmp" "$app_dir"
fi

wheel=$(cd "$app_dir" && ls voicefleet-*.whl)
printf '{"key": "%s", "version": "%s", "app_dir": "%s", "deps_dir": "%s", "wheel": "%s", "changed": %s}\n' \
  "$key" "$version" "$app_dir" "$deps_dir" "$wheel" "$changed"
