#!/usr/bin/python
"""Ansible module: gather Jetson platform facts (SKU, L4T/JetPack, power modes, memory)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: jetson_facts
short_description: Gather NVIDIA Jetson platform facts
description:
  - Reads the device-tree compatible string (module SKU), /etc/nv_tegra_release (L4T release and
    JetPack version), /etc/nvpmodel.conf (power modes, default, whether the firmware is "super"),
    the current power mode from C(nvpmodel -q) and MemTotal/MemAvailable.
  - Every path is overridable, so tests can point the module at a fake L4T surface.
  - A host that is not a Jetson is reported with C(is_jetson=false) and a reason; the module
    never fails for that (the caller decides).
options:
  devicetree_compatible_path:
    description: Device-tree compatible file.
    type: path
    default: /proc/device-tree/compatible
  nv_tegra_release_path:
    description: L4T release file.
    type: path
    default: /etc/nv_tegra_release
  nvpmodel_conf_path:
    description: nvpmodel configuration.
    type: path
    default: /etc/nvpmodel.conf
  nvpmodel_bin:
    description: nvpmodel executable (name or path).
    type: str
    default: nvpmodel
  wanted_power_mode:
    description:
      - A power mode name to resolve on this unit; the result is in
        C(power_mode.wanted) (C(id), or C(error) saying what to do when the unit has none).
    type: str
  meminfo_path:
    description: meminfo file (MemAvailable cannot be limited per test host, so tests fake it).
    type: path
    default: /proc/meminfo
author: voicefleet (@voicefleet)
"""

EXAMPLES = r"""
- name: Gather Jetson facts
  jetson_facts:
- name: Show the power mode
  ansible.builtin.debug:
    msg: "{{ ansible_facts.jetson.power_mode.current }}"
"""

RETURN = r"""
ansible_facts:
  description: C(jetson) with is_jetson, reason, part, module, family, l4t_release, jetpack,
    super, power_modes (list of id/name), power_mode (default and current), memory (bytes).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.voicefleet.fleet.plugins.module_utils.jetson import (
    parse_compatible,
    parse_meminfo,
    parse_nv_tegra_release,
    parse_nvpmodel_conf,
    parse_nvpmodel_query,
    resolve_mode,
)


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def gather(module: AnsibleModule) -> dict[str, object]:
    p = module.params
    facts: dict[str, object] = {"is_jetson": False, "reason": None, "warnings": []}
    warnings: list[str] = facts["warnings"]  # type: ignore[assignment]

    meminfo = read(p["meminfo_path"])
    mem = parse_meminfo(meminfo.decode()) if meminfo else {}
    facts["memory"] = {
        "total_bytes": mem.get("MemTotal"),
        "available_bytes": mem.get("MemAvailable"),
        "meminfo_path": p["meminfo_path"],
    }

    compatible = read(p["devicetree_compatible_path"])
    if compatible is None:
        facts["reason"] = f"no device tree compatible at {p['devicetree_compatible_path']}"
        return facts
    dt = parse_compatible(compatible)
    facts.update(dt)
    if not dt["is_jetson"]:
        facts["reason"] = f"device tree is not NVIDIA Tegra: {dt['compatible']}"
        return facts
    if dt["part"] is None:
        warnings.append(f"unknown Jetson module in {dt['compatible']}")

    release = read(p["nv_tegra_release_path"])
    if release is None:
        facts["is_jetson"] = False
        facts["reason"] = f"Tegra device tree but no {p['nv_tegra_release_path']} (L4T missing)"
        return facts
    facts.update(parse_nv_tegra_release(release.decode(errors="replace")))

    conf_raw = read(p["nvpmodel_conf_path"])
    if conf_raw is None:
        facts["reason"] = f"no {p['nvpmodel_conf_path']}"
        facts["is_jetson"] = False
        return facts
    conf = parse_nvpmodel_conf(conf_raw.decode(errors="replace"))
    facts["super"] = conf["super"]
    facts["power_modes"] = conf["modes"]
    power_mode: dict[str, object] = {
        "default": {"id": conf["default_id"], "name": conf["default_name"]},
        "current": None,
        "conf_path": p["nvpmodel_conf_path"],
    }
    facts["power_mode"] = power_mode
    if p["wanted_power_mode"]:
        wanted: dict[str, object] = {"name": p["wanted_power_mode"], "id": None, "error": None}
        try:
            wanted["id"] = resolve_mode(conf, p["wanted_power_mode"])
        except ValueError as exc:
            wanted["error"] = str(exc)
        power_mode["wanted"] = wanted

    binary = module.get_bin_path(p["nvpmodel_bin"])  # also searches the sbin dirs
    if binary is None:
        facts["reason"] = f"nvpmodel ({p['nvpmodel_bin']}) not found"
        facts["is_jetson"] = False
        return facts
    rc, out, err = module.run_command([binary, "-q"], data="")
    try:
        power_mode["current"] = parse_nvpmodel_query(out + "\n" + err)
    except ValueError as exc:
        module.fail_json(msg=f"{binary} -q (rc={rc}): {exc}", stdout=out, stderr=err)
    facts["is_jetson"] = True
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "devicetree_compatible_path": {
                "type": "path",
                "default": "/proc/device-tree/compatible",
            },
            "nv_tegra_release_path": {"type": "path", "default": "/etc/nv_tegra_release"},
            "nvpmodel_conf_path": {"type": "path", "default": "/etc/nvpmodel.conf"},
            "nvpmodel_bin": {"type": "str", "default": "nvpmodel"},
            "meminfo_path": {"type": "path", "default": "/proc/meminfo"},
            "wanted_power_mode": {"type": "str"},
        },
        supports_check_mode=True,
    )
    try:
        facts = gather(module)
    except ValueError as exc:
        module.fail_json(msg=f"jetson_facts: {exc}")
    for warning in facts.pop("warnings"):  # type: ignore[union-attr]
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"jetson": facts})


if __name__ == "__main__":
    main()
