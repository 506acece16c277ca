#!/usr/bin/env bash
# ansible-test sanity on the collection voicefleet.fleet, from a copy of the checkout's tracked
# files laid out as ansible-test wants it (ansible_collections/voicefleet/fleet/), on this
# machine's Python (--local: no container). Targets: the Ansible content (plugins/, roles/,
# playbooks/, meta/) by default; `scripts/sanity.sh --all` runs on every file of the collection
# (app/, tests/, bench/ too: pylint's Ansible profile reports their style, which ruff and mypy
# govern here). Extra arguments go to ansible-test (e.g. --test validate-modules).
#
# Offline: ansible-test bootstraps pip in each sanity venv with a script it downloads from
# ci-files.testing.ansible.com; when that host is unreachable, scripts/ansible_test_get_pip.py
# stands in for it (pip from ensurepip, then the machine's package index). The venvs are cached
# in ~/.ansible/test/venv: after the first run nothing is downloaded.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"
targets=(plugins/ roles/ playbooks/ meta/)
if [[ ${1:-} == --all ]]; then targets=(); shift; fi

pip_version=$(python - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py"
print(re.search(r"\bpip='([^']+)'", src.read_text()).group(1))
PY
)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [[ ! -f $cache ]] && ! curl -fsS --max-time 10 -o /dev/null \
    "https://ci-files.testing.ansible.com/ansible-test/get-pip-$pip_version.py" 2>/dev/null; then
  mkdir -p "$(dirname "$cache")"
  cp scripts/ansible_test_get_pip.py "$cache"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/ansible_collections/voicefleet/fleet
mkdir -p "$tree"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
  [[ $f == .venv ]] && continue  # a worktree's link to a shared venv
  [[ -e $f || -L $f ]] && printf '%s\0' "$f"
done | tar -c --null -T - | tar -x -C "$tree"
cd "$tree"
python=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --local --python "$python" "$@" "${targets[@]}"
