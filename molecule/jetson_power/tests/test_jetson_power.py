"""jetson_power on the fake SKUs: the mode by name after a real reboot, clocks pinned at boot."""

import os

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("all")
SUPER = set(RUNNER.get_hosts("super"))


def hostvars(host):
    return RUNNER.get_variables(host.backend.get_hostname())


def query(host):
    out = host.check_output("nvpmodel -q").splitlines()
    assert any(line.startswith("NVPM WARN") for line in out)  # the noise the parser skips
    name = next(x for x in out if x.startswith("NV Power Mode:")).split(":", 1)[1].strip()
    return name, int(out[-1])


def rebooted(host):
    before = host.file("/root/prepare-boot-id").content_string.strip()
    return before != host.file("/proc/sys/kernel/random/boot_id").content_string.strip()


def only(group):
    def decorate(fn):
        def wrapper(host):
            is_super = host.backend.get_hostname() in SUPER
            if (group == "super") != is_super:
                pytest.skip(f"not in {group}")
            fn(host)

        wrapper.__name__ = fn.__name__
        return wrapper

    return decorate


@only("super")
def test_super_units_run_maxn_super_with_their_own_id(host):
    assert query(host) == ("MAXN_SUPER", hostvars(host)["expected_mode_id"])


@only("super")
def test_super_units_were_rebooted_to_apply_it(host):
    assert rebooted(host)
    want = f"pmode:{hostvars(host)['expected_mode_id']:04d}"
    assert host.file("/var/lib/nvpmodel/status").content_string.startswith(want)


@only("super")
def test_clocks_unit_enabled_and_ran_at_boot(host):
    unit = host.service("jetson-clocks.service")
    assert unit.is_enabled
    props = unit.systemd_properties
    assert props["ActiveState"] == "active"
    assert props["Result"] == "success"
    assert "nvpmodel.service" in props["After"].split()
    # Started by the boot itself: before multi-user.target was reached (targets order
    # themselves after what they want), not by Ansible afterwards.
    started = int(props["ActiveEnterTimestampMonotonic"])
    target = host.service("multi-user.target").systemd_properties
    assert 0 < started <= int(target["ActiveEnterTimestampMonotonic"])


@only("super")
def test_clocks_are_pinned_to_the_maximum(host):
    show = host.check_output("jetson_clocks --show")
    gpu = next(x for x in show.splitlines() if x.startswith("GPU "))
    fields = dict(kv.split("=") for kv in gpu.split()[1:])
    assert fields["CurrentFreq"] == fields["MaxFreq"] == fields["MinFreq"]
    assert "NV Power Mode: MAXN_SUPER" in show


@only("nonsuper")
def test_unit_without_super_firmware_is_left_untouched(host):
    assert query(host) == ("15W", 2)  # the conf default, unchanged
    assert not rebooted(host)
    assert not host.file("/etc/systemd/system/jetson-clocks.service").exists
