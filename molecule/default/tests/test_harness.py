"""The harness hosts are real machines: systemd as PID 1, sshd, own address, reach each other."""

import os

import pytest
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
HOSTS = RUNNER.get_hosts("all")
testinfra_hosts = HOSTS


def address_of(name: str) -> str:
    return RUNNER.get_variables(name)["ansible_host"]


def test_systemd_is_pid_1(host):
    assert host.check_output("ps -p 1 -o comm=") == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_sshd_listens(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_has_its_own_address(host):
    name = host.check_output("hostname")
    mine = address_of(name)
    assert mine in host.interface("host0").addresses
    others = {address_of(h) for h in HOSTS if h != name}
    assert mine not in others


@pytest.mark.parametrize("peer", HOSTS)
def test_reaches_the_others(host, peer):
    if host.check_output("hostname") == peer:
        pytest.skip("self")
    assert host.run(f"ping -c 1 -W 2 {address_of(peer)}").rc == 0
