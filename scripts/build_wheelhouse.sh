#!/usr/bin/env bash
# Build, on the controller, everything a unit needs to install the voice service without a
# network or a compiler: the voicefleet wheel (`pip wheel --no-deps .`) and a wheelhouse of
# the hash-locked closure of its dependencies for the unit's target (locks/, `make lock`).
# Units install with `pip install --require-hashes --no-index` (roles/voice_service); nothing
# is built on a unit.
#
#   scripts/build_wheelhouse.sh [OUT_ROOT]     (default $VOICEFLEET_HOME/wheelhouse)
#
# Cached and keyed: deps-<key>/ by a hash of the lock file and the target's platform tags,
# app-<key>/ by a hash of the package sources. A second run builds nothing. Prints one JSON
# line: {"key", "version", "app_dir", "deps_dir", "driver_dir", "wheel", "lock", "changed"}; `key` names the
# unit's venv. deps-<key>/ holds the wheels, requirements.txt (the lock) and SHA256SUMS.
# Target: UNIT_TARGET="PYTHON MACHINE GLIBC" as the unit's interpreter reports it (the role's
# preflight probes it), e.g. "3.11 aarch64 2.35" for a JetPack 6 unit; empty: the controller's
# own. scripts/lock.py picks the lock for it; every wheel is a binary one downloaded for every
# manylinux tag the unit's glibc can load (scripts/wheel_target.py) and checked against the
# lock's hashes, so two builds hold the same bytes; a pin without such a wheel, or a file
# whose hash the lock does not list, fails here, before any unit changes.
# WITH_DRIVER=1 also downloads the target's driver lock (locks/driver-<target>.txt: ansible-core,
# for an offline bundle's apply on the unit; roles/offline) into driver-<key>/ ("driver_dir").
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

if [[ -z $unit_target ]]; then
  unit_target=$("$python" -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine(), platform.libc_ver()[1])')
fi
read -r -a unit <<<"$unit_target"
[[ ${#unit[@]} -eq 3 ]] || { echo "UNIT_TARGET: expected 'PYTHON MACHINE GLIBC', got '$unit_target'" >&2; exit 2; }
planned=$("$python" scripts/wheel_target.py "${unit[@]}") || exit 2
mapfile -t download_args <<<"$planned"
lock=$("$python" scripts/lock.py select "${unit[@]}") || exit 2
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
deps_key=$( { cat "$lock"; printf '%s\n' "${download_args[@]}" locked-wheelhouse-v1; } \
  | sha256sum | cut -c1-16)
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

# download_lock LOCK DIR: every wheel of LOCK for the target into DIR (once; DIR/.complete)
download_lock() {
  local lock=$1 dir=$2
  [[ -f $dir/.complete ]] && return 0
  changed=true
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  cp "$lock" "$dir.tmp/requirements.txt"
  "$python" -m pip download -q --require-hashes "${download_args[@]}" \
    -r "$dir.tmp/requirements.txt" -d "$dir.tmp" \
    || { echo "build_wheelhouse: the closure of $lock did not download for CPython ${unit[0]}" \
           "on ${unit[1]} with glibc ${unit[2]} (pip's error above: a wheel missing for that" \
           "target, or one whose hash the lock does not list)" >&2; exit 1; }
  (cd "$dir.tmp" && sha256sum -- *.whl >SHA256SUMS)
  touch "$dir.tmp/.complete"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}
download_lock "$lock" "$deps_dir"
driver_dir=
if [[ ${WITH_DRIVER:-} == 1 ]]; then
  driver_lock=$("$python" scripts/lock.py select "${unit[@]}" --driver) || exit 2
  driver_key=$( { cat "$driver_lock"; printf '%s\n' "${download_args[@]}" driver-wheelhouse-v1; } \
    | sha256sum | cut -c1-16)
  driver_dir=$out/driver-$driver_key
  download_lock "$driver_lock" "$driver_dir"
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
printf '{"key": "%s", "version": "%s", "app_dir": "%s", "deps_dir": "%s", "driver_dir": "%s", "wheel": "%s", "lock": "%s", "changed": %s}\n' \
  "$key" "$version" "$app_dir" "$deps_dir" "$driver_dir" "$wheel" "${lock#"$root"/}" "$changed"
