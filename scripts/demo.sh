#!/usr/bin/env bash
# The README's main job: deploy the simulated fleet with the real playbook and print its report.
#   1. scripts/sim_fleet.sh up      the 3 nspawn units (2 groups) with a fake L4T surface, and
#                                   the fleet's monitoring host (sim-prom-1)
#   2. playbooks/site.yml           preflight -> rollout in batches -> bench gate -> report
#   3. the fleet report's summary and where the HTML/JSON/Markdown are
#   4. playbooks/monitoring.yml     telemetry on the units, Prometheus on sim-prom-1 scraping them
#   5. voicefleet fleet-status      the fleet's live state, queried from that Prometheus
# A unit that fails the gate is rolled back and reported; the script exits non-zero then.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export VOICEFLEET_HOME=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

log "simulated fleet: scripts/sim_fleet.sh up"
scripts/sim_fleet.sh up >/dev/null

mkdir -p "$root/out"
run_id=$(date -u +%Y%m%dT%H%M%SZ)
log "deploy: ansible-playbook -i inventory/sim/hosts.yml voicefleet.fleet.site (run $run_id)"
start=$(date +%s)
rc=0
ansible-playbook -i inventory/sim/hosts.yml voicefleet.fleet.site -e rollout_run_id="$run_id" \
  >"$root/out/demo-$run_id.log" 2>&1 || rc=$?
log "site.yml finished in $(($(date +%s) - start)) s (rc=$rc; log: out/demo-$run_id.log)"
sed -n '/^PLAY RECAP/,$p' "$root/out/demo-$run_id.log"

report_dir=out/fleet-reports/$run_id
if [[ ! -f $report_dir/fleet-report.md ]]; then
  echo "no fleet report: the run stopped before the rollout (see out/demo-$run_id.log)" >&2
  tail -30 "$root/out/demo-$run_id.log" >&2
  exit 1
fi
echo
cat "$report_dir/fleet-report.md"
echo "fleet report: $root/$report_dir/fleet-report.html"
echo "              $root/$report_dir/fleet-report.json, $root/$report_dir/fleet-report.md"

# The fleet's Prometheus (sim: on the bridge address of sim-prom-1, inventory/sim/monitoring.yml).
prometheus=http://10.214.0.19:9090
log "monitoring: ansible-playbook -i inventory/sim/hosts.yml -i inventory/sim/monitoring.yml voicefleet.fleet.monitoring"
start=$(date +%s)
mrc=0
ansible-playbook -i inventory/sim/hosts.yml -i inventory/sim/monitoring.yml \
  voicefleet.fleet.monitoring >"$root/out/demo-$run_id-monitoring.log" 2>&1 || mrc=$?
log "monitoring.yml finished in $(($(date +%s) - start)) s (rc=$mrc; log: out/demo-$run_id-monitoring.log)"
if ((mrc != 0)); then
  tail -30 "$root/out/demo-$run_id-monitoring.log" >&2
  exit "$mrc"
fi
echo
log "live state: voicefleet fleet-status --prometheus $prometheus"
voicefleet fleet-status --prometheus "$prometheus" --wait 90 || rc=$((rc ? rc : $?))
echo "again any time: .venv/bin/voicefleet fleet-status --prometheus $prometheus"
exit "$rc"
