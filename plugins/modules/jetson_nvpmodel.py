#!/usr/bin/python
"""Ansible module: set a Jetson power mode by name, and say whether a reboot must apply it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: jetson_nvpmodel
short_description: Set the NVIDIA Jetson power mode by name
description:
  - Resolves the mode name (e.g. C(MAXN_SUPER)) to its ID in nvpmodel.conf on this unit (IDs
    differ per SKU) and sets it with C(nvpmodel -m ID) only when the current mode differs.
  - When nvpmodel answers that the switch needs a reboot it asks for a confirmation on a TTY and,
    without one, changes nothing; confirming makes nvpmodel reboot by itself under Ansible. So
    the module records the mode in nvpmodel's status file (what nvpmodel does on a confirmed
    switch; nvpmodel.service applies it early at boot) and returns C(reboot_required=true); the
    caller reboots with M(ansible.builtin.reboot) and verifies with C(nvpmodel -q).
  - Fails with a clear message when the unit has no mode of that name.
  - In check mode, reports the change without making it.
options:
  name:
    description: Power mode name as in nvpmodel.conf.
    type: str
    required: true
  nvpmodel_conf_path:
    description: nvpmodel configuration.
    type: path
    default: /etc/nvpmodel.conf
  nvpmodel_status_path:
    description: nvpmodel's status file (the mode applied at boot).
    type: path
    default: /var/lib/nvpmodel/status
  nvpmodel_bin:
    description: nvpmodel executable (name or path).
    type: str
    default: nvpmodel
author: voicefleet (@voicefleet)
"""

EXAMPLES = r"""
- name: Power mode MAXN_SUPER
  jetson_nvpmodel:
    name: MAXN_SUPER
  register: mode
- name: Reboot to apply it
  ansible.builtin.reboot:
  when: mode.reboot_required
"""

RETURN = r"""
id:
  description: ID of the wanted mode on this unit.
  returned: success
  type: int
previous:
  description: Mode before (id, name).
  returned: success
  type: dict
reboot_required:
  description: The mode applies only after a reboot (recorded for the next boot).
  returned: success
  type: bool
output:
  description: What nvpmodel -m printed.
  returned: when it ran
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.voicefleet.fleet.plugins.module_utils.jetson import (
    nvpmodel_needs_reboot,
    parse_nvpmodel_conf,
    parse_nvpmodel_query,
    resolve_mode,
    status_with_mode,
)


def query(module: AnsibleModule, binary: str) -> dict[str, object]:
    rc, out, err = module.run_command([binary, "-q"], data="")
    try:
        return parse_nvpmodel_query(out + "\n" + err)
    except ValueError as exc:
        module.fail_json(msg=f"{binary} -q (rc={rc}): {exc}", stdout=out, stderr=err)
    raise AssertionError("unreachable")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "nvpmodel_conf_path": {"type": "path", "default": "/etc/nvpmodel.conf"},
            "nvpmodel_status_path": {"type": "path", "default": "/var/lib/nvpmodel/status"},
            "nvpmodel_bin": {"type": "str", "default": "nvpmodel"},
        },
        supports_check_mode=True,
    )
    p = module.params
    binary = module.get_bin_path(p["nvpmodel_bin"], required=True)
    try:
        with open(p["nvpmodel_conf_path"]) as fh:
            conf = parse_nvpmodel_conf(fh.read())
        wanted = resolve_mode(conf, p["name"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    current = query(module, binary)
    result = {"id": wanted, "name": p["name"], "previous": current, "reboot_required": False}
    if current["id"] == wanted:
        module.exit_json(changed=False, **result)
    if module.check_mode:
        module.exit_json(changed=True, **result)

    # stdin is not a TTY and gets no confirmation: nvpmodel either switches live or only
    # tells us that a reboot is needed (and then changes nothing).
    rc, out, err = module.run_command([binary, "-m", str(wanted)], data="")
    output = (out + err).strip()
    result["output"] = output
    if nvpmodel_needs_reboot(output):
        status = ""
        try:
            with open(p["nvpmodel_status_path"]) as fh:
                status = fh.read()
        except FileNotFoundError:
            pass
        try:
            with open(p["nvpmodel_status_path"], "w") as fh:
                fh.write(status_with_mode(status, wanted))
        except OSError as exc:
            module.fail_json(msg=f"cannot record the mode for the next boot: {exc}", **result)
        result["reboot_required"] = True
        module.exit_json(changed=True, **result)
    if rc != 0:
        module.fail_json(msg=f"{binary} -m {wanted} failed (rc={rc}): {output}", **result)
    now = query(module, binary)
    if now["id"] != wanted:
        module.fail_json(
            msg=f"{binary} -m {wanted} did not switch to {p['name']}: now {now}; output: {output}",
            **result,
        )
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
