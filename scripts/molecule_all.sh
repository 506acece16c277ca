#!/usr/bin/env bash
# Run `molecule test` for every scenario under molecule/ (each directory with a molecule.yml),
# one after the other (each with the shared base, .config/molecule/config.yml, which molecule
# finds by itself); print each scenario's wall time; fail if any
# failed. Usage: scripts/molecule_all.sh [SCENARIO...]   (default: all, sorted by name)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export VOICEFLEET_HOME=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}

if (($#)); then
  scenarios=("$@")
else
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
    | xargs -n1 basename | sort)
fi
((${#scenarios[@]})) || { echo "molecule_all: no scenarios under molecule/" >&2; exit 1; }

declare -A result seconds
failed=0
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  start=$(date +%s)
  if molecule test -s "$s"; then result[$s]=ok; else result[$s]=FAILED; failed=1; fi
  seconds[$s]=$(($(date +%s) - start))
  echo "=== $s: ${result[$s]} in ${seconds[$s]} s"
done

echo
echo "molecule scenarios:"
total=0
for s in "${scenarios[@]}"; do
  printf '  %-16s %-7s %5d s\n' "$s" "${result[$s]}" "${seconds[$s]}"
  total=$((total + seconds[$s]))
done
printf '  %-16s %-7s %5d s\n' total "" "$total"
exit "$failed"
