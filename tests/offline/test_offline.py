"""An offline site (molecule scenario `offline`, one unit, roles/offline): the controller builds
and signs a bundle without reaching the unit; the bundle reaches the unit through its rootfs (the
way a USB stick would) while the unit's link is down (no SSH, no network: checked); the unit
applies it itself (`voicefleet-bundle apply`, run through nsenter into its namespaces), the gate
passes and the service answers. Then: a bundle with one byte changed is refused and nothing on
the unit changes; site.yml from the controller changes nothing on the unit (the bundle gave the
same result as a push); the controller collects the unit's report.

Run by `scripts/molecule_all.sh offline` (its verifier), which creates the unit; by hand:
VOICEFLEET_FLEET_INVENTORY=<inventory with offline-1> pytest tests/offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.runner import FLEET_MARKS, REPORTS, Run, on_unit, play, release, serves, site

pytestmark = FLEET_MARKS
UNIT = "offline-1"
HOSTS = (
    Path(os.environ.get("VOICEFLEET_HOME") or Path.home() / ".cache/voicefleet") / "nspawn/hosts"
)
STICK = "/root/usb"  # where the bundle lands in the unit's filesystem
STATE = "/var/lib/voicefleet/offline"
# What a deploy leaves on a unit: a refused bundle must leave every entry as it was.
WATCHED = (
    "/opt/voicefleet /etc/voicefleet /etc/llama-server /etc/systemd/system /var/lib/voicefleet"
)


def leader(name: str) -> int:
    """The unit's PID 1 as the controller sees it: the child of its systemd-nspawn."""
    wrapper = json.loads((HOSTS / name / "host.json").read_text())["pid"]

    def children(pid: int) -> list[int]:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    nspawn = [p for p in children(wrapper) if Path(f"/proc/{p}/comm").read_text().strip()
              == "systemd-nspawn"]  # fmt: skip
    assert len(nspawn) == 1, f"{name}: no systemd-nspawn under its boot loop {wrapper}"
    (init,) = children(nspawn[0])
    return init


def inside(name: str, command: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """A command in the unit's namespaces (mount, pid, net, ...), not over SSH."""
    argv = ["nsenter", "-t", str(leader(name)), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--",
            "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root", "LANG=C.UTF-8", "sh", "-c", command]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def ssh_reaches(name: str) -> bool:
    proc = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o",
                           "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           f"root@{address(name)}", "true"], capture_output=True,
                          timeout=30, check=False)  # fmt: skip
    return proc.returncode == 0 or b"Permission denied" in proc.stderr


def address(name: str) -> str:
    return str(json.loads((HOSTS / name / "host.json").read_text())["address"])


def link(name: str, up: bool) -> None:
    """The unit's only link (host0 in its network namespace) down: no controller, no network."""
    subprocess.run(["ip", "-n", name, "link", "set", "host0", "up" if up else "down"], check=True)
    if up:
        subprocess.run(["ip", "-n", name, "route", "replace", "default", "via", "10.214.0.1"],
                       check=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while not ssh_reaches(name):
            assert time.monotonic() < deadline, f"{name}: no SSH after its link came back"
            time.sleep(1)


def to_stick(name: str, *files: Path) -> list[str]:
    """Write files into the unit's rootfs (as a USB stick mounted at STICK would bring them)."""
    stick = HOSTS / name / "merged" / STICK.lstrip("/")
    stick.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, stick / f.name)
    return [f"{STICK}/{f.name}" for f in files]


def snapshot(name: str) -> str:
    """Every path under WATCHED with its type, size, mode and mtime, and the release."""
    out = inside(name, f"find {WATCHED} -printf '%p %y %s %m %T@\\n' 2>/dev/null | sort")
    return out.stdout + json.dumps(release(name))


class Applied:
    def __init__(self, bundle: Path, proc: subprocess.CompletedProcess[str], ssh_cut: bool,
                 seconds: float, built: Run) -> None:  # fmt: skip
        self.bundle, self.proc, self.ssh_cut, self.seconds, self.built = (
            bundle, proc, ssh_cut, seconds, built)  # fmt: skip

    @property
    def id(self) -> str:
        return self.bundle.name.removeprefix("voicefleet-bundle-").removesuffix(".tar")


@pytest.fixture(scope="module")
def applied() -> Iterator[Applied]:
    run_id = f"offline-{int(time.time())}-bundle"
    built = play("offline_bundle", run_id, "-e", f"offline_bundle_id={run_id}")
    assert built.rc == 0, built.out[-6000:]
    bundle = REPORTS.parent / "bundles" / f"voicefleet-bundle-{run_id}.tar"
    assert bundle.is_file() and Path(f"{bundle}.sig").is_file()
    tar, _ = to_stick(UNIT, bundle, Path(f"{bundle}.sig"))
    link(UNIT, up=False)
    try:
        ssh_cut = not ssh_reaches(UNIT)
        start = time.monotonic()
        proc = inside(UNIT, f"voicefleet-bundle apply {tar} 2>&1")
        seconds = time.monotonic() - start
    finally:
        link(UNIT, up=True)
    (REPORTS / run_id).mkdir(parents=True, exist_ok=True)
    (REPORTS / run_id / "apply.log").write_text(proc.stdout)
    yield Applied(bundle, proc, ssh_cut, seconds, built)


def test_the_unit_applies_the_bundle_itself_with_no_path_to_the_controller(
    applied: Applied,
) -> None:
    assert applied.ssh_cut, "the controller still reached the unit during the apply"
    assert applied.proc.returncode == 0, applied.proc.stdout[-8000:]
    out = applied.proc.stdout
    assert "good signature by voicefleet-bundle" in out
    assert "TASK [voicefleet.fleet.bench" in out  # the same gate as site.yml, on the unit
    print(f"\noffline: bundle {applied.bundle.stat().st_size / 2**20:.0f} MiB, built in "
          f"{applied.built.seconds:.0f} s, applied in {applied.seconds:.0f} s")  # fmt: skip
    record = json.loads(on_unit(UNIT, f"cat {STATE}/reports/{applied.id}/units/{UNIT}.json"))
    assert record["status"] == "passed" and record["bench_source"] == "measured"
    assert record["gate"]["passed"] and record["gate"]["figures"]["decode_tps"] > 0
    assert on_unit(UNIT, f"cat {STATE}/reports/{applied.id}/.pending").strip() == UNIT
    assert release(UNIT)["current"]
    serves(UNIT)


def test_a_bundle_with_one_byte_changed_is_refused_and_changes_nothing(
    applied: Applied, tmp_path: Path
) -> None:
    tampered = tmp_path / applied.bundle.name
    shutil.copyfile(applied.bundle, tampered)
    with open(tampered, "r+b") as f:  # one byte in the middle of the archive (a model's bytes)
        f.seek(tampered.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    shutil.copyfile(f"{applied.bundle}.sig", f"{tampered}.sig")
    before = snapshot(UNIT)
    tar, _ = to_stick(UNIT, tampered, Path(f"{tampered}.sig"))
    proc = inside(UNIT, f"voicefleet-bundle apply {tar}")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert (
        "refused: bad signature" in proc.stderr
        and "nothing on this unit was changed" in proc.stderr
    )
    assert "PLAY" not in proc.stdout  # nothing ran
    assert snapshot(UNIT) == before
    serves(UNIT)


def test_site_yml_after_the_bundle_changes_nothing(applied: Applied) -> None:
    """The bundle left the unit exactly where a push from the controller would have."""
    current = release(UNIT)["current"]
    again = site(f"offline-{int(time.time())}-site")
    assert again.rc == 0, again.out[-6000:]
    assert again.recap[UNIT]["changed"] == 0 and again.recap[UNIT]["failed"] == 0, again.out[-6000:]
    assert release(UNIT)["current"] == current
    assert again.unit(UNIT)["bench_source"] == "reused"  # the release is the one the bundle gated


def test_the_controller_collects_the_units_report(applied: Applied) -> None:
    collected = play("offline_collect", applied.id)
    assert collected.rc == 0, collected.out[-6000:]
    report: dict[str, Any] = json.loads((REPORTS / applied.id / "fleet-report.json").read_text())
    (unit,) = report["units"]
    assert unit["host"] == UNIT and unit["status"] == "passed"
    assert json.loads((REPORTS / applied.id / f"{UNIT}.apply.json").read_text())["rc"] == 0
    assert on_unit(UNIT, f"ls -A {STATE}/reports/{applied.id}").split().count(".pending") == 0
    again = play("offline_collect", applied.id)  # nothing pending: nothing fetched
    assert again.rc == 0 and again.recap[UNIT]["changed"] == 0, again.out[-4000:]
