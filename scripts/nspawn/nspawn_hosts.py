"""A host's lifecycle: its overlay rootfs, the boot-loop wrapper around systemd-nspawn,
readiness over SSH, stop and complete removal, and the listing."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from nspawn_base import ensure_base
from nspawn_common import (
    BRIDGE,
    CGROUP_PARENT,
    CGROUP_ROOTS,
    GATEWAY,
    HERE,
    HOSTS,
    NAME_RE,
    NSPAWN_RUN,
    SSH_OPTS,
    SUBNET,
    Fail,
    log,
    run,
)
from nspawn_net import (
    ensure_network,
    is_mountpoint,
    link_exists,
    netns_exists,
    teardown_network,
    veth_name,
)

# --- hosts ---------------------------------------------------------------------------------


def host_dir(name: str) -> Path:
    return HOSTS / name


def read_meta(name: str) -> dict[str, object]:
    path = host_dir(name) / "host.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_meta(name: str, meta: dict[str, object]) -> None:
    path = host_dir(name) / "host.json"
    path.write_text(json.dumps(meta, indent=1) + "\n")


def cgroup_dirs(name: str) -> list[Path]:
    return [root / CGROUP_PARENT / name for root in CGROUP_ROOTS]


def wrapper_pid(name: str) -> int | None:
    """The boot-loop's PID if it is alive and really ours (guards against PID reuse)."""
    pid = read_meta(name).get("pid")
    if not isinstance(pid, int):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    ours = str(HERE / "boot-loop.sh").encode() in cmdline and name.encode() in b" ".join(cmdline)
    return pid if ours else None


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(name):
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def all_names() -> list[str]:
    return sorted(p.name for p in HOSTS.iterdir() if p.is_dir()) if HOSTS.is_dir() else []


def prepare_rootfs(name: str, addr: str, merged: Path, pubkey: str) -> None:
    """Give the host its identity inside its overlay, before it boots."""
    (merged / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (merged / "etc/hostname").write_text(name + "\n")
    (merged / "etc/hosts").write_text(f"127.0.0.1 localhost\n{addr} {name}\n")
    run("chroot", str(merged), "ssh-keygen", "-A")
    ssh_dir = merged / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    # This network re-signs TLS: hosts need the controller's extra CAs, like the controller.
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if cas:
        dest = merged / "usr/local/share/ca-certificates"
        dest.mkdir(parents=True, exist_ok=True)
        for ca in cas:
            shutil.copy2(ca, dest / ca.name)
        run("chroot", str(merged), "update-ca-certificates")
    shutil.copy2("/etc/resolv.conf", merged / "etc/resolv.conf")


def start_host(name: str, addr: str, pubkey: str) -> None:
    hdir = host_dir(name)
    hdir.mkdir(parents=True)
    meta: dict[str, object] = {"name": name, "address": addr}
    write_meta(name, meta)  # from here on, destroy knows the host exists
    lower = ensure_base()
    upper, work, merged = hdir / "upper", hdir / "work", hdir / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    run(
        "mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged),
    )  # fmt: skip
    st = merged.stat()
    meta["lock_inode"] = f"{st.st_dev}:{st.st_ino}"
    write_meta(name, meta)
    prepare_rootfs(name, addr, merged, pubkey)

    run("ip", "netns", "add", name)
    veth = veth_name(name)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "host0", "netns", name)
    run("ip", "link", "set", veth, "master", BRIDGE, "up")
    run("ip", "-n", name, "link", "set", "lo", "up")
    run("ip", "-n", name, "addr", "add", f"{addr}/{SUBNET.prefixlen}", "dev", "host0")
    run("ip", "-n", name, "link", "set", "host0", "up")
    run("ip", "-n", name, "route", "add", "default", "via", str(GATEWAY))

    for d in cgroup_dirs(name):
        d.mkdir(parents=True, exist_ok=True)
    nspawn = [
        "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--settings=no",
        "--link-journal=no", "--console=passive", f"--network-namespace-path=/run/netns/{name}",
        "-D", str(merged), "-M", name,
    ]  # fmt: skip
    with open(hdir / "console.log", "ab") as console:
        proc = subprocess.Popen(
            [str(HERE / "boot-loop.sh"), *map(str, cgroup_dirs(name)), "--", *nspawn],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    meta["pid"] = proc.pid
    meta["started"] = time.time()
    write_meta(name, meta)


def ssh(addr: str, key: str, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *SSH_OPTS, "-i", key, f"root@{addr}", command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def wait_ready(names: list[str], key: str, timeout: float) -> None:
    """SSH answers and systemd finished booting (`degraded` is fine in a container)."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        for name in list(pending):
            if wrapper_pid(name) is None:
                tail = (host_dir(name) / "console.log").read_text(errors="replace")[-2000:]
                raise Fail(f"{name}: nspawn exited during boot; console tail:\n{tail}")
            addr = str(read_meta(name)["address"])
            try:
                res = ssh(addr, key, "systemctl is-system-running --wait", timeout=60)
            except subprocess.TimeoutExpired:
                continue
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                pending.remove(name)
            elif res.returncode != 255 and state not in ("starting", "initializing", ""):
                raise Fail(f"{name}: systemd state is {state!r} after boot")
        if pending:
            if time.monotonic() > deadline:
                raise Fail(f"hosts not ready after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.5)


def ensure_key(key: str) -> str:
    """The run's SSH key (private at KEY, public at KEY.pub), generated when missing."""
    priv = Path(key)
    if not priv.exists():
        priv.parent.mkdir(parents=True, exist_ok=True)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "voicefleet-test", "-f", key)
    return Path(key + ".pub").read_text()


def create(pairs: list[tuple[str, str]], key: str, timeout: float) -> dict[str, str]:
    """Start the hosts that are not running; returns {name: 'created'|'unchanged'}."""
    pubkey = ensure_key(key)
    result: dict[str, str] = {}
    started: list[str] = []
    taken = {str(read_meta(n).get("address")): n for n in all_names()}
    for name, addr in pairs:
        if not NAME_RE.match(name):
            raise Fail(f"bad host name {name!r}: use [a-z][a-z0-9-]{{0,30}}")
        ip = ipaddress.ip_address(addr)
        if ip not in SUBNET or ip in (GATEWAY, SUBNET.network_address, SUBNET.broadcast_address):
            raise Fail(f"{name}: address {addr} is not a host address in {SUBNET} (not {GATEWAY})")
        if taken.get(addr, name) != name:
            raise Fail(f"{name}: address {addr} is already used by host {taken[addr]}")
        taken[addr] = name
    try:
        for name, addr in pairs:
            meta = read_meta(name)
            if host_dir(name).exists() and wrapper_pid(name) and meta.get("address") == addr:
                result[name] = "unchanged"
                continue
            if host_dir(name).exists():
                log(f"{name}: exists but is not running as asked; recreating")
                destroy_host(name)
            ensure_network()
            start_host(name, addr, pubkey)
            started.append(name)
            result[name] = "created"
        wait_ready(list(result), key, timeout)
    except BaseException:
        for name in started:
            with contextlib.suppress(Exception):
                destroy_host(name)
        if not all_names():
            teardown_network()
        raise
    return result


def stop_host(name: str, grace: float = 20) -> None:
    pid = wrapper_pid(name)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while wrapper_pid(name) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is left (a guest that did not halt, a stuck wrapper): KILL by PID, from the cgroup.
    deadline = time.monotonic() + 10
    while (pids := cgroup_pids(name)) and time.monotonic() < deadline:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.2)
    if cgroup_pids(name):
        raise Fail(f"{name}: processes left in its cgroup: {sorted(cgroup_pids(name))}")
    # Reap the wrapper if we are its parent (create + destroy in one process).
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def destroy_host(name: str) -> None:
    meta = read_meta(name)
    stop_host(name)
    for top in cgroup_dirs(name):
        if top.is_dir():
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*dirs, top]:
                with contextlib.suppress(OSError):
                    d.rmdir()
        if top.exists():
            raise Fail(f"{name}: could not remove cgroup dir {top}")
    shutil.rmtree(NSPAWN_RUN / "propagate" / name, ignore_errors=True)
    merged = host_dir(name) / "merged"
    lock_inode = meta.get("lock_inode")
    if is_mountpoint(merged):
        st = merged.stat()
        lock_inode = f"{st.st_dev}:{st.st_ino}"
        run("umount", str(merged), check=False)
        if is_mountpoint(merged):
            run("umount", "-l", str(merged))
    if lock_inode:
        with contextlib.suppress(FileNotFoundError):
            (NSPAWN_RUN / "locks" / f"inode-{lock_inode}").unlink()
    if netns_exists(name):
        run("ip", "netns", "del", name)
    if link_exists(veth_name(name)):
        run("ip", "link", "del", veth_name(name), check=False, quiet=True)  # may be gone already
    shutil.rmtree(host_dir(name), ignore_errors=True)


def destroy(names: list[str]) -> list[str]:
    done = []
    for name in names:
        if host_dir(name).exists() or netns_exists(name):
            destroy_host(name)
            done.append(name)
    if not all_names():
        teardown_network()
    return done


def host_state(name: str) -> str:
    if wrapper_pid(name) is None:
        return "stopped"
    return "running"


def cmd_list(as_json: bool) -> None:
    rows = []
    for name in all_names():
        meta = read_meta(name)
        rows.append(
            {
                "name": name,
                "address": meta.get("address"),
                "state": host_state(name),
                "pid": wrapper_pid(name),
                "rss_kib": sum(rss_kib(p) for p in cgroup_pids(name)),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        print(f"{r['name']:<20} {r['address']!s:<15} {r['state']:<8} rss={r['rss_kib'] // 1024}MiB")


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
