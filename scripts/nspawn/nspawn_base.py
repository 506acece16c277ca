"""The cached Debian base rootfs every host overlays (built once per recipe key)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nspawn_common import (
    BASE,
    BASE_KEY,
    BASE_PACKAGES,
    BASE_RECIPE,
    MIRROR,
    STATE,
    SUITE,
    log,
    run,
)

# --- base rootfs ---------------------------------------------------------------------------


def ensure_base() -> Path:
    rootfs = BASE / "rootfs"
    if (BASE / "ready").exists():
        return rootfs
    if BASE.exists():
        shutil.rmtree(BASE)
    tmp = STATE / f"base-{BASE_KEY}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"debootstrap {SUITE} into the base cache (once, ~1 min): {' '.join(BASE_PACKAGES)}")
    start = time.monotonic()
    run(
        "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
        SUITE, str(tmp / "rootfs"), MIRROR, timeout=1200,
    )  # fmt: skip
    root = tmp / "rootfs"
    # Each host gets its own identity at create time.
    (root / "etc/machine-id").write_text("")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    run("chroot", str(root), "apt-get", "clean")
    (tmp / "recipe").write_text(BASE_RECIPE + "\n")
    (tmp / "ready").write_text(f"{time.monotonic() - start:.1f}\n")
    tmp.rename(BASE)
    log(f"base ready in {time.monotonic() - start:.0f} s: {rootfs}")
    return rootfs
