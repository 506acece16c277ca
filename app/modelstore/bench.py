"""`voicefleet models bench FILE`: verify throughput against `sha256sum` on the same file, and
the cost of re-verifying an unchanged file (stamp: no bytes read). Prints figures, writes JSON.

Each timing is the best of N runs after one warm-up read, so both tools see the page cache
the same way (a cold read on a Jetson's eMMC/NVMe would add the same I/O time to both).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .verify import sha256_file, verify_file


def _best(fn: Any, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_bench(path: Path, runs: int = 3) -> dict[str, Any]:
    size = path.stat().st_size
    sha, _ = sha256_file(path)  # warm-up and reference
    tool = shutil.which("sha256sum")
    if tool is None:
        raise RuntimeError("sha256sum not found")

    def coreutils() -> None:
        out = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True)
        if out.stdout.split()[0] != sha:
            raise RuntimeError("sha256sum disagrees with hashlib")

    t_sum = _best(coreutils, runs)
    first = verify_file(path, sha, size)
    t_verify = _best(lambda: verify_file(path, sha, size), runs)
    t_stamp = _best(lambda: verify_file(path, sha, size, first.stamp), max(runs, 10))
    if verify_file(path, sha, size, first.stamp).hashed:
        raise RuntimeError("stamp did not spare the re-hash")
    mib = size / 2**20
    return {
        "file": str(path),
        "bytes": size,
        "host": platform.node(),
        "machine": platform.machine(),
        "runs": runs,
        "sha256sum_s": round(t_sum, 4),
        "verify_s": round(t_verify, 4),
        "verify_vs_sha256sum": round(t_verify / t_sum, 3),
        "sha256sum_mib_s": round(mib / t_sum, 1),
        "verify_mib_s": round(mib / t_verify, 1),
        "reverify_stamp_s": round(t_stamp, 6),
        "reverify_bytes_read": 0,
        "goal_ratio": 1.2,
        "goal_met": t_verify / t_sum <= 1.2,
    }


def main(path: Path, out: Path | None, runs: int) -> int:
    r = run_bench(path, runs)
    print(f"file            {r['file']} ({r['bytes'] / 2**20:.0f} MiB)")
    print(f"sha256sum       {r['sha256sum_s']:.3f} s  ({r['sha256sum_mib_s']:.0f} MiB/s)")
    print(
        f"verify (full)   {r['verify_s']:.3f} s  ({r['verify_mib_s']:.0f} MiB/s)  "
        f"= {r['verify_vs_sha256sum']:.2f}x sha256sum (goal <= 1.2x: "
        f"{'met' if r['goal_met'] else 'NOT met'})"
    )
    print(f"re-verify       {r['reverify_stamp_s'] * 1e3:.3f} ms (stamp, 0 bytes hashed)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=1) + "\n")
        print(f"wrote {out}")
    return 0 if r["goal_met"] else 1
