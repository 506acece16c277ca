#!/usr/bin/env python3
"""voicefleet-telemetry: a Jetson's tegrastats as Prometheus metrics (stdlib only).

Runs on the unit's own python3 (JetPack 6: CPython 3.10, no venv), so it stays independent of
the voice service: a unit whose service crashed still reports its temperatures. It keeps one
`tegrastats --interval <ms>` child, parses each line (parse_line, pure, tested against real
JetPack 6 lines) and serves the latest sample at http://<host>:<port>/metrics.

Throttling is read from the temperatures: on Orin the BPMP starts software clock throttling at
the 99 C trip of the CPU/GPU/SoC zones, so a sensor at or above `--throttle-trip-c` means the
clocks are being cut (the GPU/CPU clock gauges show by how much).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TIME = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_EMC = re.compile(r"\bEMC_FREQ (?:(\d+)%)?(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
# sensor@45.5C; tegrastats prints -256C for a sensor that is not populated on the module
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW\b")
_ABSENT_SENSOR_C = -256.0


def parse_line(line: str) -> dict[str, Any]:
    """One tegrastats line -> a dict of its fields. ValueError if it is not a tegrastats line.

    Fields a module or release does not print (EMC_FREQ without root, engines a module lacks)
    are absent or None, never guessed.
    """
    ram = _RAM.search(line)
    if ram is None:
        raise ValueError(f"not a tegrastats line: {line[:80]!r}")
    sample: dict[str, Any] = {
        "time": None,
        "ram_used_mb": int(ram.group(1)),
        "ram_total_mb": int(ram.group(2)),
        "swap_used_mb": None,
        "swap_total_mb": None,
        "cpus": [],
        "emc_load_percent": None,
        "emc_freq_mhz": None,
        "gpu_load_percent": None,
        "gpu_freq_mhz": [],
        "temperatures_c": {},
        "rails_mw": {},
    }
    stamp = _TIME.match(line)
    if stamp:
        sample["time"] = stamp.group(1)
    swap = _SWAP.search(line)
    if swap:
        sample["swap_used_mb"], sample["swap_total_mb"] = int(swap.group(1)), int(swap.group(2))
    cpu = _CPU.search(line)
    if cpu:
        for core, text in enumerate(cpu.group(1).split(",")):
            m = _CORE.match(text.strip())
            sample["cpus"].append(
                {
                    "core": core,
                    "online": m is not None,
                    "load_percent": int(m.group(1)) if m else None,
                    "freq_mhz": int(m.group(2)) if m and m.group(2) else None,
                }
            )
    emc = _EMC.search(line)
    if emc:
        sample["emc_load_percent"] = int(emc.group(1)) if emc.group(1) else None
        sample["emc_freq_mhz"] = int(emc.group(2)) if emc.group(2) else None
    gr3d = _GR3D.search(line)
    if gr3d:
        sample["gpu_load_percent"] = int(gr3d.group(1))
        if gr3d.group(2):
            sample["gpu_freq_mhz"] = [int(f) for f in gr3d.group(2).split(",") if f]
    for name, value in _TEMP.findall(line):
        if float(value) != _ABSENT_SENSOR_C:
            sample["temperatures_c"][name.lower()] = float(value)
    for name, inst, avg in _RAIL.findall(line):
        sample["rails_mw"][name] = (int(inst), int(avg))
    return sample


def throttling(sample: dict[str, Any], trip_c: float) -> bool:
    """True when any sensor is at or above the software-throttle trip."""
    return any(t >= trip_c for t in sample["temperatures_c"].values())


def render(sample: dict[str, Any] | None, trip_c: float, age_s: float | None) -> str:
    """Prometheus text exposition (0.0.4) of one sample; only the up/age series without one."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, rows: list[tuple]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            text = ",".join(f'{k}="{v}"' for k, v in labels)
            out.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    family(
        "jetson_telemetry_up",
        "gauge",
        "1 when a tegrastats sample is fresh (tegrastats runs and its lines parse).",
        [((), 1 if sample is not None else 0)],
    )
    if age_s is not None:
        family(
            "jetson_telemetry_sample_age_seconds",
            "gauge",
            "Seconds since the last parsed line.",
            [((), round(age_s, 3))],
        )
    if sample is None:
        return "\n".join(out) + "\n"
    temps = sample["temperatures_c"]
    family(
        "jetson_temperature_celsius",
        "gauge",
        "Thermal sensor readings (cpu, gpu, soc0-2, tj = junction).",
        [((("sensor", s),), t) for s, t in sorted(temps.items())],
    )
    family(
        "jetson_throttle_trip_celsius",
        "gauge",
        "Software-throttle trip the throttling gauge compares against.",
        [((), trip_c)],
    )
    family(
        "jetson_thermal_throttling",
        "gauge",
        "1 when a sensor is at or above the throttle trip (the BPMP is cutting clocks).",
        [((), 1 if throttling(sample, trip_c) else 0)],
    )
    cpus = sample["cpus"]
    family(
        "jetson_cpu_online",
        "gauge",
        "1 when the core is online (tegrastats prints 'off' for a core the power mode parks).",
        [((("core", c["core"]),), int(c["online"])) for c in cpus],
    )
    family(
        "jetson_cpu_load_percent",
        "gauge",
        "Per-core load relative to its current clock.",
        [((("core", c["core"]),), c["load_percent"]) for c in cpus if c["online"]],
    )
    family(
        "jetson_cpu_frequency_mhz",
        "gauge",
        "Per-core clock.",
        [((("core", c["core"]),), c["freq_mhz"]) for c in cpus if c["freq_mhz"] is not None],
    )
    scalar = (
        ("jetson_gpu_load_percent", "gpu_load_percent", "GR3D (iGPU) load relative to its clock."),
        ("jetson_emc_load_percent", "emc_load_percent", "Memory controller load."),
        ("jetson_emc_frequency_mhz", "emc_freq_mhz", "Memory controller (EMC) clock."),
        ("jetson_ram_used_megabytes", "ram_used_mb", "RAM in use (CPU and GPU share it)."),
        ("jetson_ram_total_megabytes", "ram_total_mb", "RAM available to applications."),
        ("jetson_swap_used_megabytes", "swap_used_mb", "Swap (zram) in use."),
        ("jetson_swap_total_megabytes", "swap_total_mb", "Swap (zram) size."),
    )
    for name, key, help_text in scalar:
        if sample[key] is not None:
            family(name, "gauge", help_text, [((), sample[key])])
    family(
        "jetson_gpu_frequency_mhz",
        "gauge",
        "GR3D clock per GPC.",
        [((("gpc", n),), f) for n, f in enumerate(sample["gpu_freq_mhz"])],
    )
    rails = sorted(sample["rails_mw"].items())
    family(
        "jetson_power_milliwatts",
        "gauge",
        "Power rail reading now (VDD_IN = module input).",
        [((("rail", r),), v[0]) for r, v in rails],
    )
    family(
        "jetson_power_average_milliwatts",
        "gauge",
        "Power rail average since tegrastats started.",
        [((("rail", r),), v[1]) for r, v in rails],
    )
    return "\n".join(out) + "\n"


def render_filesystems(paths: list[str]) -> str:
    """Free and total bytes of each path's filesystem (models and releases fill the disk)."""
    avail, size = [], []
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        avail.append(
            f'voicefleet_unit_filesystem_avail_bytes{{mountpoint="{path}"}} '
            f"{st.f_bavail * st.f_frsize}"
        )
        size.append(
            f'voicefleet_unit_filesystem_size_bytes{{mountpoint="{path}"}} '
            f"{st.f_blocks * st.f_frsize}"
        )
    return (
        "# HELP voicefleet_unit_filesystem_avail_bytes Bytes free to unprivileged users.\n"
        "# TYPE voicefleet_unit_filesystem_avail_bytes gauge\n"
        + "".join(line + "\n" for line in avail)
        + "# HELP voicefleet_unit_filesystem_size_bytes Filesystem size.\n"
        "# TYPE voicefleet_unit_filesystem_size_bytes gauge\n"
        + "".join(line + "\n" for line in size)
    )


class Collector:
    """Keeps one tegrastats child and the latest parsed sample; restarts the child if it dies."""

    def __init__(self, tegrastats: str, interval_ms: int) -> None:
        self.argv = [tegrastats, "--interval", str(interval_ms)]
        self.stale_after_s = max(5.0, 5 * interval_ms / 1000.0)
        self.lock = threading.Lock()
        self.sample: dict[str, Any] | None = None
        self.at: float | None = None

    def latest(self) -> tuple:
        with self.lock:
            age = None if self.at is None else time.monotonic() - self.at
            fresh = age is not None and age <= self.stale_after_s
            return (self.sample if fresh else None), age

    def run(self) -> None:
        while True:
            try:
                proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
            except OSError as exc:
                print(f"voicefleet-telemetry: cannot run {self.argv[0]}: {exc}", file=sys.stderr)
                time.sleep(5)
                continue
            assert proc.stdout is not None
            for text in proc.stdout:
                try:
                    sample = parse_line(text)
                except ValueError as exc:
                    print(f"voicefleet-telemetry: {exc}", file=sys.stderr)
                    continue
                with self.lock:
                    self.sample, self.at = sample, time.monotonic()
            print(f"voicefleet-telemetry: tegrastats exited ({proc.wait()})", file=sys.stderr)
            time.sleep(2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9102)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--tegrastats", default="/usr/bin/tegrastats")
    parser.add_argument("--throttle-trip-c", type=float, default=99.0)
    parser.add_argument(
        "--filesystem", action="append", help="report free space of this path's filesystem"
    )
    args = parser.parse_args(argv)
    collector = Collector(args.tegrastats, args.interval_ms)
    threading.Thread(target=collector.run, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            sample, age = collector.latest()
            text = render(sample, args.throttle_trip_c, age)
            body = (text + render_filesystems(args.filesystem or ["/"])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every 15 s would flood the journal

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"voicefleet-telemetry: serving http://{args.host}:{args.port}/metrics", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
