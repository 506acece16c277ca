#!/usr/bin/env bash
# Build llama-server (+ llama-bench) from the llama.cpp tree vendored in the pinned
# llama-cpp-python sdist, and package it as an artifact: bin/ + manifest.json (build key,
# versions, sha256 of every file). Used by `make setup` (CPU build for tests and the demo)
# and by the llamacpp role (CPU for the sim profile, CUDA sm_87 for Jetson units).
#
# usage: build_llama_server.sh SDIST_TARBALL OUT_DIR [extra cmake flags...]
#        build_llama_server.sh --print-key SDIST_TARBALL [extra cmake flags...]
#   env: JOBS (default: nproc), BUILD_ROOT (default: OUT_DIR.build),
#        TARGET_ARCH (default: uname -m; lets the controller compute a unit's key),
#        EXTRA_TARGETS (more binaries for the artifact, e.g. llama-quantize; part of the key),
#        SDIST_SHA256 (--print-key only: the pinned sha256, so the tarball need not be here),
#        CROSS_TRIPLE (cross-build with that GNU toolchain, e.g. aarch64-linux-gnu from Debian's
#        crossbuild-essential-arm64: TARGET_ARCH defaults to its machine, and the toolchain's
#        cmake flags are part of the key, so a cross build has a key of its own)
# The build key is sha256(arch | sdist name | sdist sha256 | cmake flags [| extra targets]):
# the same inputs give the same key on every machine, so a key names one artifact.
# An interrupted build of the same key resumes where it stopped (BUILD_ROOT is kept).
# Exit codes: 0 built (or already present with the same key), 1 failure.
set -euo pipefail

print_key=0
if [[ ${1:-} == --print-key ]]; then
  print_key=1
  shift
  set -- "$1" "" "${@:2}"
fi
sdist=${1:?sdist tarball}
out=${2:-}
((print_key)) || : "${out:?output dir}"
shift 2
extra_flags=("$@")
read -r -a extra_targets <<<"${EXTRA_TARGETS:-}"

# Portable flags: GGML_NATIVE=OFF (with -march=native the CPU here reports AMX and the server
# segfaults), static libs (a self-contained artifact), no web UI download, no HTTPS client.
base_flags=(
  -DCMAKE_BUILD_TYPE=Release
  -DGGML_NATIVE=OFF
  -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_OPENSSL=OFF
)
cross=${CROSS_TRIPLE:-}
cross_flags=()
if [[ -n $cross ]]; then
  cross_flags=(
    -DCMAKE_SYSTEM_NAME=Linux
    "-DCMAKE_SYSTEM_PROCESSOR=${cross%%-*}"
    "-DCMAKE_C_COMPILER=$cross-gcc"
    "-DCMAKE_CXX_COMPILER=$cross-g++"
    "-DCMAKE_FIND_ROOT_PATH=/usr/$cross"
  )
fi
flags=("${base_flags[@]}" "${cross_flags[@]}" "${extra_flags[@]}")

if ((print_key)) && [[ -n ${SDIST_SHA256:-} ]]; then
  src_sha=$SDIST_SHA256
else
  src_sha=$(sha256sum "$sdist" | cut -c1-64)
fi
sdist_name=$(basename "$sdist" .tar.gz)
arch=${TARGET_ARCH:-${cross:+${cross%%-*}}}
arch=${arch:-$(uname -m)}
key_input="$arch|$sdist_name|$src_sha|${flags[*]}"
((${#extra_targets[@]} == 0)) || key_input+="|${extra_targets[*]}"
key=$(printf '%s' "$key_input" | sha256sum | cut -c1-16)
if ((print_key)); then
  echo "$key"
  exit 0
fi
if [[ -n $cross ]]; then
  command -v "$cross-g++" >/dev/null \
    || { echo "CROSS_TRIPLE=$cross: no $cross-g++ (apt-get install crossbuild-essential-${arch/aarch64/arm64})" >&2; exit 1; }
  [[ $arch == "${cross%%-*}" ]] \
    || { echo "TARGET_ARCH=$arch does not match CROSS_TRIPLE=$cross" >&2; exit 1; }
elif [[ $arch != "$(uname -m)" ]]; then
  echo "TARGET_ARCH=$arch but this machine is $(uname -m): build on a $arch host or cross-build (CROSS_TRIPLE)" >&2
  exit 1
fi

jobs=${JOBS:-$(nproc)}
build_root=${BUILD_ROOT:-$out.build}
# One build per build directory at a time (two `make setup`s, a test and a setup): the second
# waits, then finds the artifact the first one made.
mkdir -p "$(dirname "$build_root")"
exec 8>"$build_root.lock"
flock -n 8 || { echo "waiting for another build in $build_root"; flock 8; }

if [[ -f "$out/manifest.json" ]] && grep -q "\"build_key\": \"$key\"" "$out/manifest.json"; then
  echo "llama-server build $key already present in $out"
  exit 0
fi

log="$build_root/build.log"
tree="$build_root/$sdist_name/vendor/llama.cpp"
# Resumable: an interrupted build of the same key (a timeout, a lost connection, a killed
# job) continues in its build directory; anything else starts from fresh sources, since
# reconfiguring a directory built with other flags keeps their cached options.
if [[ -f $build_root/key && $(cat "$build_root/key") == "$key" && -d $tree ]]; then
  echo "resuming llama-server build $key ($jobs jobs); log: $log"
else
  rm -rf "$build_root"
  mkdir -p "$build_root"
  echo "building llama-server (key $key, $jobs jobs); log: $log"
  tar xzf "$sdist" -C "$build_root"
  echo "$key" >"$build_root/key"   # written once the sources are complete
  : >"$log"
fi
start=$(date +%s)
{
  cmake -S "$tree" -B "$build_root/cmake" "${flags[@]}"
  cmake --build "$build_root/cmake" --target llama-server llama-bench "${extra_targets[@]}" -j "$jobs"
} >>"$log" 2>&1 || { tail -n 40 "$log" >&2; echo "build failed; full log: $log" >&2; exit 1; }
secs=$(( $(date +%s) - start ))

stage="$out.tmp"
rm -rf "$stage"
mkdir -p "$stage/bin"
for target in llama-server llama-bench "${extra_targets[@]}"; do
  cp "$build_root/cmake/bin/$target" "$stage/bin/"
done
python3 - "$stage" "$key" "$arch" "$sdist_name" "$src_sha" "$secs" "${flags[@]}" <<'PY'
import hashlib, json, os, sys
stage, key, arch, sdist, src_sha, secs, *flags = sys.argv[1:]
files = {}
for name in sorted(os.listdir(os.path.join(stage, "bin"))):
    h = hashlib.sha256()
    with open(os.path.join(stage, "bin", name), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    files[f"bin/{name}"] = h.hexdigest()
manifest = {"build_key": key, "arch": arch, "source": sdist, "source_sha256": src_sha,
            "cmake_flags": flags, "build_seconds": int(secs), "built_on": os.uname().nodename,
            "files": files}
with open(os.path.join(stage, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=2)
# `sha256sum -c SHA256SUMS` verifies an installed copy without Python.
with open(os.path.join(stage, "SHA256SUMS"), "w") as f:
    f.writelines(f"{digest}  {name}\n" for name, digest in files.items())
PY
rm -rf "$out"
mv "$stage" "$out"
rm -rf "$build_root/$sdist_name" "$build_root/cmake" "$build_root/key"  # keep the log
echo "built llama-server $key in ${secs}s -> $out"
