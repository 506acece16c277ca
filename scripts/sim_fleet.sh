#!/usr/bin/env bash
# The local simulated fleet: three nspawn units with a fake L4T surface (inventory/sim/hosts.yml)
# and the fleet's monitoring host (inventory/sim/monitoring.yml: plain Debian 12 with systemd,
# given the sim key for its scrape tunnels; playbooks/monitoring.yml installs Prometheus there).
#   scripts/sim_fleet.sh up      create the hosts that are missing, install the fake surface
#                                (idempotent: a second run changes nothing)
#   scripts/sim_fleet.sh down    destroy the hosts (and the bridge/NAT once no host is left)
#   scripts/sim_fleet.sh status  list the hosts
# Host lifecycle is scripts/nspawn/nspawnctl's; names and addresses come from the inventory.
# VOICEFLEET_SIM_INVENTORY (space-separated files) brings up another fleet the same way
# (bench/scale.py's units). A failed or interrupted `up` destroys what it started. Needs root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export VOICEFLEET_HOME=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
read -r -a inventories <<<"${VOICEFLEET_SIM_INVENTORY:-inventory/sim/hosts.yml inventory/sim/monitoring.yml}"
inventory_args=()
for inv in "${inventories[@]}"; do inventory_args+=(-i "$inv"); done
key=$VOICEFLEET_HOME/sim/id_ed25519
nspawnctl=scripts/nspawn/nspawnctl
log() { printf '\033[1m[sim_fleet]\033[0m %s\n' "$*" >&2; }

# "name address" per host, from the inventory (the one place the fleet is described).
hosts() {
  ansible-inventory "${inventory_args[@]}" --list | python3 -c '
import json, sys
inv = json.load(sys.stdin)
for name, hv in sorted(inv["_meta"]["hostvars"].items()):
    print(name, hv["ansible_host"])'
}

down() {
  local names
  names=$(hosts | cut -d" " -f1 | tr "\n" " ")
  # shellcheck disable=SC2086
  "$nspawnctl" destroy $names >/dev/null
  log "down: destroyed ${names}"
}

up() {
  local pairs created recap hosts_changed tasks_changed
  pairs=$(hosts | tr "\n" " ")
  trap 'log "up failed or interrupted: removing the fleet"; trap - INT TERM ERR; down; exit 1' INT TERM ERR
  # shellcheck disable=SC2086
  created=$("$nspawnctl" create $pairs --ssh-key "$key")
  recap=$(ANSIBLE_ROLES_PATH="$root/molecule/resources/roles" ANSIBLE_NOCOLOR=1 \
    ansible-playbook "${inventory_args[@]}" molecule/resources/prepare_sim_fleet.yml -e sim_key="$key" \
    | tee /dev/stderr)
  trap - INT TERM ERR
  hosts_changed=$(python3 -c 'import json, sys; print(str(json.load(sys.stdin)["changed"]).lower())' <<<"$created")
  tasks_changed=$(grep -Eo 'changed=[0-9]+' <<<"$recap" | awk -F= '{s += $2} END {print s + 0}')
  echo "sim_fleet up: hosts_changed=$hosts_changed tasks_changed=$tasks_changed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) "$nspawnctl" list ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
