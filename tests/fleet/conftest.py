"""The fleet scenario's first deploy, shared by every test file of tests/fleet/ (one bring-up
of the sim units, one first site.yml)."""

from __future__ import annotations

import time

import pytest

from tests.fleet.runner import INVENTORY, Run, site


@pytest.fixture(scope="session")
def runs() -> dict[str, Run]:
    """Runs one test file made that another can reuse instead of repeating (CI time):
    `again`, site.yml after every entry playbook (test_entry_points.py), is test_fleet.py's
    idempotent re-run."""
    return {}


@pytest.fixture(scope="session")
def first() -> Run:
    assert INVENTORY, "needs the fleet's hosts: scripts/molecule_all.sh fleet creates them"
    run = site(f"fleet-{int(time.time())}-first")
    assert run.rc == 0, run.out[-6000:]
    return run
