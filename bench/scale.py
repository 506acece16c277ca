"""What a rollout costs the controller as the fleet grows: `voicefleet.fleet.site` against N
simulated units for each N, timed per play and per role, with the controller's CPU and the
bytes each unit received.

For each N: N fresh nspawn units (`scripts/sim_fleet.sh up` on an inventory written here:
scale-01 … scale-NN at 10.214.0.101 …, two device groups 2:1 like the sim fleet, the sim
fleet's group_vars), a first deploy, then the same command again (nothing changes), then the
units are destroyed. Per run:
- wall time per play and per role (the collection's callback `voicefleet.fleet.phase_times`;
  each serial batch is a play of its own: the canary, then the rest);
- controller CPU: every process of the `ansible-playbook` run, in a cpuacct cgroup of its own
  (the SSH ControlPersist masters, which leave the process tree, included), per phase and in
  all; and the rusage of the reaped process tree (`os.wait4`) beside it;
- bytes per unit: the counters of the unit's veth (`host0` in its network namespace), read
  before and after the run (received: what the controller sent it, plus the apt package the
  llamacpp role installs from the Debian mirror);
- the load average before and after (the machine is shared).

The units are lighter than a production unit so that 12 fit on a 2-core machine (LIGHT):
the bench gate is not run (`--skip-tags bench`: no `voicefleet bench` on the units) and
llama-server has 2 slots instead of 8 (KV cache for 4,096 tokens instead of 16,384). Every
other step is site.yml's: preflight (facts, fit, wheelhouse), power mode, the same models,
llama.cpp artifact and wheelhouse copied and verified, the venv installed, llama-server and
the voice service started and health-checked, the release recorded, the fleet report.

Needs root and systemd-nspawn (the test fleet); takes the molecule lock shared:
  flock -s /tmp/voicefleet-molecule.lock nice -n 10 \
    python3 bench/scale.py --units 3,6,12 --json docs/results/cpu/scale.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
VF_HOME = Path(os.environ.get("VOICEFLEET_HOME") or Path.home() / ".cache/voicefleet")
SIM_FLEET = ROOT / "scripts/sim_fleet.sh"
PREFIX, FIRST_ADDRESS = "scale", 101  # 10.214.0.101-.199 (molecule/README.md)
# What makes these units lighter than the sim fleet's (module docstring; docs/scale.md).
# (-e as JSON: `-e llamacpp_parallel=2` would pass the string "2", which the llamacpp role's
# -c template multiplies as a string)
LIGHT_ARGS = ["--skip-tags", "bench", "-e", '{"llamacpp_parallel": 2}']
LIGHT = " ".join(LIGHT_ARGS)
CACHES = ("wheelhouse", "controller-models", "llama.cpp/artifacts")


def write_inventory(path: Path, n: int) -> dict[str, str]:
    """N units in the sim fleet's two groups (2 NX : 1 Nano), the sim fleet's vars."""
    sim = yaml.safe_load((ROOT / "inventory/sim/hosts.yml").read_text())["all"]
    hosts = {f"{PREFIX}-{i:02d}": f"10.214.0.{FIRST_ADDRESS + i - 1}" for i in range(1, n + 1)}
    groups: dict[str, dict[str, Any]] = {
        "orin_nx_16gb": {"hosts": {}},
        "orin_nano_8gb": {"hosts": {}},
    }
    for i, (name, addr) in enumerate(hosts.items(), 1):
        group = "orin_nano_8gb" if i % 3 == 0 else "orin_nx_16gb"
        groups[group]["hosts"][name] = {"ansible_host": addr}
    groups = {g: v for g, v in groups.items() if v["hosts"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"all": {"vars": sim["vars"], "children": groups}}))
    link = path.parent / "group_vars"
    if not link.exists():
        link.symlink_to(ROOT / "inventory/sim/group_vars")
    return hosts


def sim_fleet(action: str, inventory: Path) -> float:
    start = time.monotonic()
    env = {**os.environ, "VOICEFLEET_SIM_INVENTORY": str(inventory)}
    proc = subprocess.run([str(SIM_FLEET), action], env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"sim_fleet.sh {action} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - start


def veth_bytes(name: str) -> dict[str, int]:
    out = subprocess.run(["ip", "-n", name, "-s", "-j", "link", "show", "host0"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    stats = json.loads(out)[0]["stats64"]
    return {"rx": int(stats["rx"]["bytes"]), "tx": int(stats["tx"]["bytes"])}


def cache_bytes() -> int:
    total = 0
    for sub in CACHES:
        for dirpath, _, files in os.walk(VF_HOME / sub):
            for f in files:
                with contextlib.suppress(OSError):
                    total += (Path(dirpath) / f).lstat().st_size
    return total


class CpuCgroup:
    """A cpuacct cgroup (v1) or a cgroup (v2) holding one run's processes."""

    def __init__(self, tag: str) -> None:
        v1 = Path("/sys/fs/cgroup/cpuacct")
        base = v1 if (v1 / "cpuacct.usage").exists() else Path("/sys/fs/cgroup")
        if not (base / "cgroup.procs").exists():
            sys.exit("no cpuacct (v1) or cgroup v2 hierarchy at /sys/fs/cgroup")
        self.path = base / f"voicefleet-scale-{os.getpid()}-{tag}"
        self.path.mkdir()

    def enter(self) -> None:  # in the child, before exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def cpu_s(self) -> float:
        usage = self.path / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def end_leftovers(self) -> None:
        """End what the run left in it (its SSH ControlPersist masters), by PID."""
        for _ in range(50):
            if not (left := self.pids()):
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.2)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def rollout(inventory: Path, hosts: dict[str, str], run_id: str, work: Path,
            forks: int) -> dict[str, Any]:  # fmt: skip
    """One site.yml run: its phases, controller CPU, bytes per unit, recap."""
    phases_json, log = work / f"{run_id}.phases.json", work / f"{run_id}.log"
    cmd = ["ansible-playbook", "-i", str(inventory), "voicefleet.fleet.site", "-f", str(forks),
           *LIGHT_ARGS, "-e", f"rollout_run_id={run_id}"]  # fmt: skip
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "voicefleet.fleet.phase_times",
        "VOICEFLEET_PHASE_TIMES_JSON": str(phases_json),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
        "PWD": str(ROOT),
    }
    cgroup = CpuCgroup(run_id)
    env["VOICEFLEET_PHASE_TIMES_CPUACCT"] = str(cgroup.path)
    before = {h: veth_bytes(h) for h in hosts}
    cache_before, load_before = cache_bytes(), os.getloadavg()
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=cgroup.enter)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    after = {h: veth_bytes(h) for h in hosts}
    cgroup.end_leftovers()  # the ssh masters outlive the run by ControlPersist; counted here
    cpu = cgroup.cpu_s()
    cgroup.remove()
    rc = proc.returncode
    text = log.read_text()
    recap_lines = text.split("PLAY RECAP", 1)[-1].splitlines()[1:]
    recap = {ln.split()[0]: dict(kv.split("=") for kv in ln.split(":", 1)[1].split())
             for ln in recap_lines if " : ok=" in ln}  # fmt: skip
    if rc != 0:
        print(text[-5000:], file=sys.stderr)
        sys.exit(f"{' '.join(cmd)} failed ({rc}); log: {log}")
    rx = {h: after[h]["rx"] - before[h]["rx"] for h in hosts}
    tx = {h: after[h]["tx"] - before[h]["tx"] for h in hosts}
    units = [h for h in recap if h in hosts]
    return {
        "run_id": run_id,
        "wall_s": round(wall, 1),
        "controller_cpu_s": round(cpu, 1),
        "controller_cpu_s_per_unit": round(cpu / len(hosts), 2),
        "rusage_tree_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "controller_peak_rss_mib": round(usage.ru_maxrss / 1024),
        "bytes_to_unit": {
            "mean": round(sum(rx.values()) / len(rx)),
            "min": min(rx.values()),
            "max": max(rx.values()),
        },
        "bytes_from_unit_mean": round(sum(tx.values()) / len(tx)),
        "changed_per_unit": {h: int(recap[h]["changed"]) for h in units},
        "controller_cache_bytes_added": cache_bytes() - cache_before,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "phases": json.loads(phases_json.read_text()),
    }


def phase_rows(run: dict[str, Any]) -> list[tuple[str, str, int, float, float]]:
    """(play, role, hosts, wall_s, cpu_s), batches numbered."""
    rows, seen = [], {}
    for play in run["phases"]["plays"]:
        name = play["play"].split(" — ")[0]
        seen[name] = seen.get(name, 0) + 1
        if name.startswith("Roll out"):
            name = f"rollout batch {seen[name]}"
        for p in play["phases"]:
            rows.append((name, p["role"], len(play["hosts"]), p["wall_s"], p["cpu_s"]))
    return rows


def print_run(n: int, kind: str, run: dict[str, Any]) -> None:
    mib = run["bytes_to_unit"]["mean"] / 2**20
    print(f"\nN={n} {kind}: wall {run['wall_s']} s, controller CPU {run['controller_cpu_s']} s "
          f"({run['controller_cpu_s_per_unit']} s/unit; reaped tree {run['rusage_tree_cpu_s']} s), "
          f"{mib:.1f} MiB to each unit, load {run['loadavg_before'][0]} -> "
          f"{run['loadavg_after'][0]}")  # fmt: skip
    for play, role, hosts, wall, cpu in phase_rows(run):
        if wall >= 0.5:
            print(f"  {play:<22} {role:<16} {hosts:>3} hosts  wall {wall:7.1f} s  cpu {cpu:6.1f} s")


def markdown(report: dict[str, Any]) -> str:
    """docs/scale.md's tables from a report: per size, then per phase of the first deploy."""
    runs = report["runs"]
    out = ["| units | first deploy: wall s | controller CPU s | CPU s / unit | MiB to each unit "
           "| again: wall s | CPU s / unit | KiB to each unit | load 1 min before → after |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in runs:
        f, a = r["first"], r.get("again")
        again = (f"{a['wall_s']} | {a['controller_cpu_s_per_unit']} | "
                 f"{a['bytes_to_unit']['mean'] / 1024:.0f}") if a else "- | - | -"  # fmt: skip
        out.append(f"| {r['units']} | {f['wall_s']} | {f['controller_cpu_s']} | "
                   f"{f['controller_cpu_s_per_unit']} | {f['bytes_to_unit']['mean'] / 2**20:.1f} | "
                   f"{again} | {f['loadavg_before'][0]} → {f['loadavg_after'][0]} |")  # fmt: skip
    keys: list[tuple[str, str]] = []
    cells: dict[tuple[str, str, int], tuple[int, float, float]] = {}
    for r in runs:
        for play, role, hosts, wall, cpu in phase_rows(r["first"]):
            if (play, role) not in keys:
                keys.append((play, role))
            cells[play, role, r["units"]] = (hosts, wall, cpu)
    sizes = [r["units"] for r in runs]
    out += ["", "| play | role | " + " | ".join(f"N={n}: hosts, wall s, CPU s" for n in sizes)
            + " |", "|---|---|" + "---|" * len(sizes)]  # fmt: skip
    for play, role in keys:
        row = [f"{c[0]}, {c[1]:.1f}, {c[2]:.1f}" if (c := cells.get((play, role, n))) else "-"
               for n in sizes]  # fmt: skip
        out.append(f"| {play} | {role} | " + " | ".join(row) + " |")
    return "\n".join(out)


def write_report(path: Path, runs: list[dict[str, Any]], forks: int) -> None:
    last = max(int(r["units"]) for r in runs)
    report = {
        "tool": "bench/scale.py",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "command": f"ansible-playbook -i INVENTORY voicefleet.fleet.site -f FORKS {LIGHT}",
        "forks": forks,
        "rollout_batches": "[1, '100%'] (site.yml's default: a canary, then the rest)",
        "light_units": "no bench gate (--skip-tags bench); llama-server -np 2 instead of 8",
        "addresses": f"10.214.0.{FIRST_ADDRESS}-.{FIRST_ADDRESS + last - 1}",
        "runs": runs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", default="3,6,12", help="fleet sizes, comma-separated")
    ap.add_argument("--forks", type=int, default=10, help="ansible-playbook -f (ansible.cfg: 10)")
    ap.add_argument("--no-rerun", action="store_true", help="skip the second (no-change) run")
    ap.add_argument("--keep", action="store_true", help="leave the last fleet up")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--append", action="store_true",
                    help="keep the --json file's runs of other sizes")  # fmt: skip
    ap.add_argument("--markdown", type=Path, metavar="JSON",
                    help="print docs/scale.md's tables from a report, run nothing")  # fmt: skip
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    sizes = [int(x) for x in args.units.split(",")]
    if os.geteuid() != 0 or max(sizes) > 99 or min(sizes) < 1:
        sys.exit("needs root; units 1-99 (addresses 10.214.0.101-.199)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="voicefleet-scale-"))
    inventory = work / "inventory/hosts.yml"
    results: list[dict[str, Any]] = []
    if args.append and args.json and args.json.exists():
        results = [r for r in json.loads(args.json.read_text())["runs"] if r["units"] not in sizes]
    for n in sizes:
        hosts = write_inventory(inventory, n)
        print(f"N={n}: bringing up {', '.join(hosts)} (log: {work})", file=sys.stderr, flush=True)
        up_s = sim_fleet("up", inventory)
        try:
            entry: dict[str, Any] = {"units": n, "bring_up_s": round(up_s, 1)}
            entry["first"] = rollout(inventory, hosts, f"scale-n{n}-{stamp}", work, args.forks)
            print_run(n, "first deploy", entry["first"])
            if not args.no_rerun:
                entry["again"] = rollout(inventory, hosts, f"scale-n{n}-again-{stamp}", work,
                                         args.forks)  # fmt: skip
                print_run(n, "again (no change)", entry["again"])
            results.append(entry)
        finally:
            if not (args.keep and n == sizes[-1]):
                sim_fleet("down", inventory)
        if args.json:  # after every size: a later failure keeps what was measured
            write_report(args.json, sorted(results, key=lambda r: int(r["units"])), args.forks)
    if args.json:
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
