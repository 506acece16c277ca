"""Parsing of the L4T surface on real-format samples (module_utils/jetson.py)."""

import jetson
import pytest

# nvpmodel -q on a JetPack 6.2 Orin Nano: warnings first, then the name and the ID.
QUERY_NANO = """NVPM WARN: fan mode is not set!
NVPM WARN: patching tpc_pg_mask: (0x0:0x0)
NV Power Mode: MAXN_SUPER
2
"""

CONF_NX_SUPER = """
# Power model configuration for Jetson Orin NX 16GB
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online

< POWER_MODEL ID=0 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1
GPU MAX_FREQ -1

< POWER_MODEL ID=1 NAME=10W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=15W >
< POWER_MODEL ID=3 NAME=25W >
< POWER_MODEL ID=4 NAME=40W >
# < POWER_MODEL ID=9 NAME=COMMENTED >

# mandatory section to configure the default mode
< PM_CONFIG DEFAULT=2 >
"""

CONF_NX_OLD = """< POWER_MODEL ID=0 NAME=MAXN >
< POWER_MODEL ID=1 NAME=10W >
< POWER_MODEL ID=2 NAME=15W >
< POWER_MODEL ID=3 NAME=25W >
< PM_CONFIG DEFAULT=2 >
"""


def test_query_skips_warnings_and_reads_name_and_id():
    assert jetson.parse_nvpmodel_query(QUERY_NANO) == {"name": "MAXN_SUPER", "id": 2}


def test_query_without_warnings():
    assert jetson.parse_nvpmodel_query("NV Power Mode: 15W\n0\n") == {"name": "15W", "id": 0}


@pytest.mark.parametrize(
    "text", ["", "NVPM ERROR: failed to open /etc/nvpmodel.conf\n", "NV Power Mode: 15W\n"]
)
def test_query_without_a_mode_is_an_error(text):
    with pytest.raises(ValueError, match="nvpmodel -q"):
        jetson.parse_nvpmodel_query(text)


def test_conf_modes_default_and_super():
    conf = jetson.parse_nvpmodel_conf(CONF_NX_SUPER)
    assert [(m["id"], m["name"]) for m in conf["modes"]] == [
        (0, "MAXN_SUPER"), (1, "10W"), (2, "15W"), (3, "25W"), (4, "40W"),
    ]  # fmt: skip
    assert conf["default_id"] == 2
    assert conf["default_name"] == "15W"
    assert conf["super"] is True
    assert jetson.resolve_mode(conf, "MAXN_SUPER") == 0


def test_mode_ids_differ_per_sku():
    nano = "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n"
    nano += "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< PM_CONFIG DEFAULT=1 >\n"
    assert jetson.resolve_mode(jetson.parse_nvpmodel_conf(nano), "MAXN_SUPER") == 2


def test_non_super_firmware_says_what_to_do():
    conf = jetson.parse_nvpmodel_conf(CONF_NX_OLD)
    assert conf["super"] is False
    with pytest.raises(ValueError) as err:
        jetson.resolve_mode(conf, "MAXN_SUPER")
    msg = str(err.value)
    assert "modes: 0=MAXN, 1=10W, 2=15W, 3=25W" in msg
    assert "flash the JetPack 6.2" in msg
    assert "set jetson_power_mode to one of the listed modes" in msg


def test_unknown_mode_on_super_firmware_lists_modes_without_flash_hint():
    with pytest.raises(ValueError) as err:
        jetson.resolve_mode(jetson.parse_nvpmodel_conf(CONF_NX_SUPER), "MAXN")
    assert "0=MAXN_SUPER" in str(err.value)
    assert "flash" not in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [("# nothing\n", "no < POWER_MODEL"), (CONF_NX_OLD + "< POWER_MODEL ID=1 NAME=X >\n", "dup")],
)
def test_bad_conf_is_an_error(text, message):
    with pytest.raises(ValueError, match=message):
        jetson.parse_nvpmodel_conf(text)


def test_nv_tegra_release_jetpack_6_2():
    line = (
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
        "# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n"
    )
    assert jetson.parse_nv_tegra_release(line) == {
        "l4t_release": "36.4.3", "l4t_major": 36, "l4t_revision": "4.3", "jetpack": "6.2",
    }  # fmt: skip


def test_nv_tegra_release_unknown_jetpack_and_garbage():
    assert (
        jetson.parse_nv_tegra_release("# R36 (release), REVISION: 9.9, GCID: 1")["jetpack"] is None
    )
    with pytest.raises(ValueError):
        jetson.parse_nv_tegra_release("Debian GNU/Linux 12")


def test_compatible_orin_nx_16gb_super():
    raw = b"nvidia,p3768-0000+p3767-0000-super\x00nvidia,p3767-0000\x00nvidia,tegra234\x00"
    dt = jetson.parse_compatible(raw)
    assert dt["is_jetson"] is True
    assert dt["part"] == "p3767-0000"
    assert dt["module"] == "Jetson Orin NX 16GB"
    assert dt["soc"] == "tegra234"
    assert dt["devicetree_super"] is True


def test_compatible_orin_nano_8gb():
    dt = jetson.parse_compatible(
        "nvidia,p3768-0000+p3767-0003\0nvidia,p3767-0003\0nvidia,tegra234\0"
    )
    assert (dt["module"], dt["family"], dt["module_memory_gb"]) == (
        "Jetson Orin Nano 8GB",
        "orin_nano",
        8,
    )
    assert dt["devicetree_super"] is False


def test_compatible_of_a_pc_is_not_a_jetson():
    dt = jetson.parse_compatible(b"qemu,virt\x00")
    assert dt["is_jetson"] is False
    assert dt["part"] is None


def test_reboot_prompt_detection():
    out = (
        "NVPM WARN: Golden image context is already created\n"
        "NVPM WARN: Reboot required for changing to this power mode: 2\n"
        "NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:\n"
        "NVPM ERROR: bad input!\n"
    )
    assert jetson.nvpmodel_needs_reboot(out)
    assert not jetson.nvpmodel_needs_reboot("NV Power Mode: MAXN_SUPER\n0\n")


def test_meminfo_in_bytes():
    mem = jetson.parse_meminfo(
        "MemTotal:  7620112 kB\nMemAvailable:  6000000 kB\nHugePages_Total: 0\n"
    )
    assert mem["MemTotal"] == 7620112 * 1024
    assert mem["MemAvailable"] == 6000000 * 1024
    assert mem["HugePages_Total"] == 0


@pytest.mark.parametrize(
    "before, after",
    [("pmode:0001 fmode:quiet\n", "pmode:0002 fmode:quiet\n"), ("", "pmode:0002\n")],
)
def test_status_file_records_the_mode(before, after):
    assert jetson.status_with_mode(before, 2) == after
