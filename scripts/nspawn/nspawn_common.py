"""nspawnctl's shared ground: where state lives, the fleet's network constants, the base
rootfs recipe, and the small helpers (run a command, log, the state lock) every part uses."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOME = Path(os.environ.get("VOICEFLEET_HOME") or Path.home() / ".cache/voicefleet")
if not HOME.is_absolute() or "$" in str(HOME) or "}" in str(HOME):
    sys.exit(f"nspawnctl: VOICEFLEET_HOME must be an absolute path, got {str(HOME)!r}")
STATE = HOME / "nspawn"
HOSTS = STATE / "hosts"

BRIDGE = os.environ.get("VOICEFLEET_NSPAWN_BRIDGE", "vfbr0")
SUBNET = ipaddress.ip_network(os.environ.get("VOICEFLEET_NSPAWN_SUBNET", "10.214.0.0/24"))
GATEWAY = next(SUBNET.hosts())
RULE_TAG = f"voicefleet-nspawn-{BRIDGE}"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
CGROUP_PARENT = "voicefleet"
NSPAWN_RUN = Path("/run/systemd/nspawn")

SUITE = "bookworm"
MIRROR = os.environ.get("VOICEFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# minbase lacks systemd-sysv (no /sbin/shutdown for Ansible's reboot) and dbus.
BASE_PACKAGES = sorted(
    "systemd systemd-sysv openssh-server python3 sudo ca-certificates iproute2 dbus "  # noqa: SIM905
    "iputils-ping procps".split()
)
BASE_RECIPE = f"v1 {SUITE} {MIRROR} minbase {' '.join(BASE_PACKAGES)}"
BASE_KEY = hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:12]
BASE = STATE / f"base-{BASE_KEY}"

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SSH_OPTS = [
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3",
]  # fmt: skip


class Fail(Exception):
    """A failure with a message meant for the user."""


def log(msg: str) -> None:
    print(f"nspawnctl: {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True, quiet: bool = False, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise Fail(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    if not check and proc.returncode != 0 and not quiet:
        log(f"(ignored) {' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
