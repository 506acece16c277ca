#!/usr/bin/env bash
# Repack the pinned llama-cpp-python sdist so its vendored llama.cpp travels to a GPU box
# (the sdist is 74 MB; what travels there is capped at 64 MiB): the same tree minus docs,
# sample models, tests, examples and the GPU backends other than CUDA. Deterministic (sorted
# names, fixed mtime and owner), so the same sdist always gives the same sha256 and the same
# llama.cpp build key.
#
# usage: bench/gpu/pack_source.sh SDIST_TARBALL OUT_TARBALL
set -euo pipefail
sdist=${1:?pinned sdist tarball}
out=${2:?output tarball}
name=$(basename "$sdist" .tar.gz)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$sdist" -C "$work"
tree="$work/$name/vendor/llama.cpp"
[[ -d $tree ]] || { echo "$sdist has no vendor/llama.cpp" >&2; exit 1; }
rm -rf "$tree"/{docs,models,tests,examples,benches,media,.devops,.github,tools/ui/tests,tools/server/webui}
for backend in "$tree"/ggml/src/ggml-*/; do
  case $(basename "$backend") in
    ggml-cpu | ggml-cuda | ggml-blas) ;;
    *) rm -rf "$backend" ;;
  esac
done
# the Python package and its bindings are not needed to build llama-server
rm -rf "$work/$name"/{.git,llama_cpp,docs,examples,tests,docker,scripts}
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf - "$name" \
  | gzip -n -9 >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(stat -c %s "$out") bytes, sha256 $(sha256sum "$out" | cut -c1-64)"
