"""The fleet scenario's deploys, shared by every test file of tests/fleet/ (one bring-up of the
sim units, one first site.yml, one rollout with faults)."""

from __future__ import annotations

import time

import pytest

from tests.fleet.runner import (
    HEAT,
    INVENTORY,
    NX1,
    NX2,
    SLOW_STT,
    SLOW_THREADS,
    Faults,
    Run,
    host_vars,
    on_unit,
    release,
    site,
)


@pytest.fixture(scope="session")
def runs() -> dict[str, Run]:
    """Runs one test file made that another can reuse instead of repeating (CI time):
    `again`, site.yml after every entry playbook (test_entry_points.py), is test_fleet.py's
    idempotent re-run and test_gate.py's report with the previous run's figures."""
    return {}


@pytest.fixture(scope="session")
def first() -> Run:
    assert INVENTORY, "needs the fleet's hosts: scripts/molecule_all.sh fleet creates them"
    run = site(f"fleet-{int(time.time())}-first")
    assert run.rc == 0, run.out[-6000:]
    return run


@pytest.fixture(scope="session")
def again(first: Run, runs: dict[str, Run]) -> Run:
    """site.yml once more, nothing changed: test_entry_points.py's when it ran."""
    if "again" not in runs:
        runs["again"] = site(f"fleet-{int(time.time())}-second")
    return runs["again"]


@pytest.fixture(scope="session")
def faults(first: Run) -> Faults:
    """One rollout, three faults, one deploy (CI time: not one rollout per fault). NX2's new
    release oversubscribes llama-server (decode ~10x slower: test_fleet.py) and NX2 runs hot
    past the throttle trip (the fake tegrastats' switch: test_gate.py); NX1's new release
    transcribes ~10x slower (what users hear: test_gate.py). The canary (NANO, unchanged,
    its figures reused) passes; batch 2 (NX1, NX2) fails and is rolled back."""
    before = {host: release(host)["current"] for host in (NX1, NX2)}
    host_vars(NX2, {"llamacpp_threads": SLOW_THREADS})
    host_vars(NX1, SLOW_STT)
    on_unit(NX2, f"mkdir -p /run/fake-l4t && echo tj_c=101.5 > {HEAT}")
    try:
        return Faults(site(f"fleet-{int(time.time())}-faults"), before)
    finally:
        host_vars(NX2, None)
        host_vars(NX1, None)
        on_unit(NX2, f"rm -f {HEAT}", check=False)
