"""The fleet's network: the bridge, its NAT rules, one network namespace + veth per host."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
from pathlib import Path

from nspawn_common import (
    BRIDGE,
    CGROUP_PARENT,
    CGROUP_ROOTS,
    GATEWAY,
    NSPAWN_RUN,
    RULE_TAG,
    STATE,
    SUBNET,
    log,
    run,
)

# --- network -------------------------------------------------------------------------------


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def veth_name(host: str) -> str:
    return "vfh" + hashlib.sha256(host.encode()).hexdigest()[:8]


def iptables_rules() -> list[tuple[str, str, list[str]]]:
    """(table, chain, spec) of the NAT/forward rules this tool owns."""
    tag = ["-m", "comment", "--comment", RULE_TAG]
    return [
        ("nat", "POSTROUTING", ["-s", str(SUBNET), "!", "-o", BRIDGE, "-j", "MASQUERADE", *tag]),
        ("filter", "FORWARD", ["-i", BRIDGE, "-j", "ACCEPT", *tag]),
        ("filter", "FORWARD", ["-o", BRIDGE, "-j", "ACCEPT", *tag]),
    ]


def ensure_network() -> None:
    net_state = STATE / "net.json"
    if not net_state.exists():
        saved = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        net_state.write_text(json.dumps({"ip_forward": saved}) + "\n")
    if not link_exists(BRIDGE):
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    for table, chain, spec in iptables_rules():
        present = subprocess.run(
            ["iptables", "-w", "-t", table, "-C", chain, *spec], capture_output=True, check=False
        )
        if present.returncode != 0:
            run("iptables", "-w", "-t", table, "-I", chain, "1", *spec)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def is_mountpoint(path: Path) -> bool:
    """os.path.ismount misses bind mounts within one filesystem (like /run/netns)."""
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(path) for line in mountinfo)


def bridge_ports() -> list[str]:
    out = run("ip", "-o", "link", "show", "master", BRIDGE, check=False, quiet=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def teardown_network() -> None:
    """Remove everything ensure_network made, once no host on this machine uses the bridge
    (hosts of another state dir included: the bridge and NAT rules are machine-wide)."""
    if link_exists(BRIDGE) and bridge_ports():
        log(f"{BRIDGE} still has hosts attached ({', '.join(bridge_ports())}): network kept")
        return
    for table in ("nat", "filter"):
        for line in run("iptables", "-w", "-t", table, "-S", check=False).splitlines():
            if RULE_TAG in line and line.startswith("-A "):
                args = line.split()[1:]
                args = [a.strip('"') for a in args]
                run("iptables", "-w", "-t", table, "-D", *args, check=False)
    if link_exists(BRIDGE):
        run("ip", "link", "del", BRIDGE, check=False)
    net_state = STATE / "net.json"
    if net_state.exists():
        saved = json.loads(net_state.read_text()).get("ip_forward", "0")
        Path("/proc/sys/net/ipv4/ip_forward").write_text(f"{saved}\n")
        net_state.unlink()
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir() and not any(netns_dir.iterdir()):
        # `ip netns add` bind-mounts /run/netns onto itself (sometimes more than once).
        for _ in range(5):
            if not is_mountpoint(netns_dir):
                break
            run("umount", str(netns_dir), check=False)
        with contextlib.suppress(OSError):
            netns_dir.rmdir()
    for sub in ("locks", "propagate", ""):
        with contextlib.suppress(OSError):
            (NSPAWN_RUN / sub).rmdir()  # only when empty: others may use nspawn too
    for root in CGROUP_ROOTS:
        with contextlib.suppress(OSError):
            (root / CGROUP_PARENT).rmdir()
