#!/usr/bin/env bash
# The aarch64 side of the test fleet, on an x86_64 controller: run aarch64 binaries under
# qemu-user (binfmt_misc) and build a Debian 12 arm64 base rootfs for nspawn hosts, cached
# like the x86_64 base (scripts/nspawn/nspawnctl: keyed by a hash of its recipe).
#
#   arm64.sh binfmt                  qemu-user-static (apt) + binfmt_misc mounted + qemu-aarch64
#                                    registered with the F flag (the interpreter is opened now,
#                                    so it works inside chroots and nspawn hosts); idempotent
#   arm64.sh base PACKAGE...         build (once) and print the arm64 base rootfs: debootstrap
#                                    --foreign --arch=arm64 minbase with PACKAGE..., then its
#                                    second stage run under emulation; the caller (nspawnctl)
#                                    passes the same packages as its x86_64 base
#   arm64.sh check ROOTFS            run `uname -m` and python3 inside ROOTFS (chroot)
#
# Root only. State: ${VOICEFLEET_HOME:-~/.cache/voicefleet}/nspawn/base-arm64-<key>/.
# Emulation proves the aarch64 userland (wheels, ELF, the service starting), not speed or CUDA.
set -euo pipefail
vf_home=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}
state=$vf_home/nspawn
suite=bookworm
mirror=${VOICEFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
binfmt=/proc/sys/fs/binfmt_misc
log() { printf 'arm64: %s\n' "$*" >&2; }

ensure_binfmt() {
  if [[ ! -x /usr/bin/qemu-aarch64-static ]]; then
    log "apt: installing qemu-user-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-user-static >/dev/null
  fi
  if [[ ! -e $binfmt/register ]]; then
    log "mounting binfmt_misc on $binfmt"
    mount -t binfmt_misc binfmt_misc "$binfmt"
  fi
  if [[ ! -e $binfmt/qemu-aarch64 ]]; then
    # Debian's qemu-user-static ships the registration line; F: keep the interpreter open.
    local line
    line=$(grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | head -n 1)
    [[ $line == :qemu-aarch64:*F ]] || line=${line%:*}:F
    log "registering qemu-aarch64 with binfmt_misc"
    printf '%s' "$line" >"$binfmt/register"
  fi
  grep -q '^enabled' "$binfmt/qemu-aarch64" \
    || { log "binfmt_misc: qemu-aarch64 is registered but disabled"; exit 1; }
}

ensure_base() {
  (($#)) || { log "base: name the packages (nspawnctl passes its base packages)"; exit 2; }
  local packages recipe key base tmp start
  packages=$(printf '%s\n' "$@" | LC_ALL=C sort -u | paste -sd,)
  recipe="v1 arm64 $suite $mirror minbase ${packages//,/ }"
  key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
  base=$state/base-arm64-$key
  mkdir -p "$state"
  exec 9>"$state/base-arm64.lock"
  flock 9
  if [[ -f $base/ready ]]; then
    echo "$base/rootfs"
    return
  fi
  ensure_binfmt
  tmp=$base.tmp
  rm -rf "$base" "$tmp"
  mkdir -p "$tmp"
  start=$(date +%s)
  log "debootstrap --foreign arm64 $suite (first stage, native): $packages"
  debootstrap --foreign --arch=arm64 --variant=minbase --include="$packages" \
    "$suite" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -n 20 "$tmp/debootstrap.log" >&2; exit 1; }
  local first=$(($(date +%s) - start))
  log "second stage under qemu-aarch64 (minutes; log: $tmp/rootfs/debootstrap/debootstrap.log)"
  chroot "$tmp/rootfs" /debootstrap/debootstrap --second-stage >>"$tmp/debootstrap.log" 2>&1 \
    || { tail -n 20 "$tmp/debootstrap.log" >&2; exit 1; }
  local second=$(($(date +%s) - start - first))
  # Each host gets its own identity at create time (as the x86_64 base).
  : >"$tmp/rootfs/etc/machine-id"
  rm -f "$tmp"/rootfs/etc/ssh/ssh_host_*
  chroot "$tmp/rootfs" apt-get clean
  echo "$recipe" >"$tmp/recipe"
  printf '{"first_stage_s": %d, "second_stage_s": %d}\n' "$first" "$second" >"$tmp/ready"
  mv "$tmp" "$base"
  log "arm64 base ready: first stage ${first} s, second stage ${second} s: $base/rootfs"
  echo "$base/rootfs"
}

check_rootfs() {
  local rootfs=${1:?rootfs}
  ensure_binfmt
  chroot "$rootfs" /bin/sh -c 'uname -m; python3 -c "import platform, sys;
print(\"python\", platform.python_version(), platform.machine(), \"glibc\", platform.libc_ver()[1])"'
}

[[ $(id -u) == 0 ]] || { log "run as root"; exit 1; }
case ${1:-} in
  binfmt) ensure_binfmt ;;
  base) shift; ensure_base "$@" ;;
  check) check_rootfs "${2:-}" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
