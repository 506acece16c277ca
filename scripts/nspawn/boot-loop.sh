#!/usr/bin/env bash
# Keeps one nspawn host running: joins the host's cgroups, starts systemd-nspawn and starts it
# again when the guest asks for a reboot (nspawn exits 133). TERM/INT are forwarded to nspawn,
# which halts the guest cleanly; after that the loop ends instead of restarting.
# Usage: boot-loop.sh CGROUP_DIR [CGROUP_DIR...] -- systemd-nspawn ARGS...
set -u
cgroups=()
while (($#)) && [[ $1 != -- ]]; do cgroups+=("$1"); shift; done
shift
for dir in "${cgroups[@]}"; do echo $$ >"$dir/cgroup.procs"; done

stopping=0
child=
on_stop() {
  stopping=1
  [[ -n $child ]] && kill -TERM "$child" 2>/dev/null
}
trap on_stop TERM INT

while :; do
  "$@" &
  child=$!
  wait "$child"
  rc=$?
  # `wait` returns early when a trapped signal arrives: wait again for the real exit status.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    rc=$?
  done
  child=
  echo "boot-loop: nspawn exited with $rc at $(date +%T)"
  if ((stopping)) || ((rc != 133)); then
    exit "$rc"
  fi
done
