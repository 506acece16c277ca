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
# Target: UNIT_TARGET="PYTHON MACHINE GLIBC" as the unit's interpreter reports it (the role's
# preflight probes it), e.g. "3.11 aarch64 2.35" for a JetPack 6 unit; empty: the controller's
# own. When the controller's pip can build for the unit (same CPython and machine, a unit glibc
# no older: the simulated Debian 12 units) the dependencies are `pip wheel`ed here, so an
# sdist-only one is built once on the controller. Otherwise they come as binary wheels only
# (`pip download --only-binary`) for every manylinux tag the unit's glibc can load
# (scripts/wheel_target.py); a pin without such a wheel fails here, before any unit changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vf_home=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
out=${1:-$vf_home/wheelhouse}
python=${PYTHON:-$root/.venv/bin/python}
unit_target=${UNIT_TARGET:-}
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

target=$("$python" -c 'import sys, sysconfig; print(sysconfig.get_platform(), sys.implementation.cache_tag)')
download_args=()
if [[ -n $unit_target ]]; then
  read -r -a unit <<<"$unit_target"
  [[ ${#unit[@]} -eq 3 ]] || { echo "UNIT_TARGET: expected 'PYTHON MACHINE GLIBC', got '$unit_target'" >&2; exit 2; }
  planned=$("$python" scripts/wheel_target.py "${unit[@]}") || exit 2
  if [[ -n $planned ]]; then
    mapfile -t download_args <<<"$planned"
    target="${unit[*]} binary-only"
  fi
fi
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
requirements=$("$python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
deps_key=$(printf '%s\n%s\npip-wheelhouse-v1\n' "$requirements" "$target" | sha256sum | cut -c1-16)
# The package as pip builds it: pyproject + every file under app/ that git tracks or would;
# an installed collection (no checkout of its own): every file under app/ but bytecode.
app_files() {
  if [[ $(git rev-parse --show-toplevel 2>/dev/null) == "$root" ]]; then
    git ls-files -co --exclude-standard app
  else
    find app -type f ! -name '*.pyc' ! -path '*/__pycache__/*'
  fi
}
src_key=$( { cat pyproject.toml; app_files \
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
  if [[ ${#download_args[@]} -gt 0 ]]; then
    "$python" -m pip download -q "${download_args[@]}" \
      -r "$deps_dir.tmp/requirements.txt" -d "$deps_dir.tmp" pip \
      || { echo "build_wheelhouse: a pin has no binary wheel for CPython ${unit[0]} on" \
             "${unit[1]} with glibc ${unit[2]} (pip's error above)" >&2; exit 1; }
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
