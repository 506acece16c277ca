#!/usr/bin/env bash
# Controller side of the artifact cache (CACHE/<key>.tar.gz holds bin/, manifest.json,
# SHA256SUMS).
#   artifact_lookup.sh CACHE KEY [PREBUILT_DIR...]   prints: cached | prebuilt DIR | missing
#   artifact_lookup.sh --seed CACHE KEY DIR           packs DIR (a build_llama_server.sh output
#                                                     whose manifest has KEY) into the cache
set -euo pipefail
if [[ ${1:-} == --seed ]]; then
  cache=$2 key=$3 dir=$4
  grep -q "\"build_key\": \"$key\"" "$dir/manifest.json" || { echo "$dir is not build $key" >&2; exit 1; }
  stage=$(mktemp -d "$cache/.seed-$key.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  chmod 0755 "$stage"  # mktemp makes it 0700: unpacked on a unit, the llama user could not enter it
  cp -a "$dir/bin" "$dir/manifest.json" "$stage/"
  # Older artifacts have no SHA256SUMS: derive it from the manifest.
  python3 - "$stage" <<'PY'
import json, sys
stage = sys.argv[1]
files = json.load(open(f"{stage}/manifest.json"))["files"]
with open(f"{stage}/SHA256SUMS", "w") as f:
    f.writelines(f"{digest}  {name}\n" for name, digest in files.items())
PY
  (cd "$stage" && sha256sum -c --quiet SHA256SUMS)
  tar -C "$stage" -czf "$cache/.$key.tar.gz.tmp" .
  mv "$cache/.$key.tar.gz.tmp" "$cache/$key.tar.gz"
  echo "seeded $key from $dir"
  exit 0
fi
cache=${1:?cache dir} key=${2:?build key}
shift 2
if [[ -f $cache/$key.tar.gz ]]; then
  echo cached
  exit 0
fi
for dir in "$@"; do
  if [[ -f $dir/manifest.json ]] && grep -q "\"build_key\": \"$key\"" "$dir/manifest.json"; then
    echo "prebuilt $dir"
    exit 0
  fi
done
echo missing
