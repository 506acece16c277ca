#!/usr/bin/python
"""Ansible module: record, read and roll back the releases of a voicefleet unit."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voicefleet_release
short_description: Record, read and roll back the releases of a voicefleet unit
description:
  - A release is what a unit runs, identified by a hash of it (no timestamps) - the voice
    service's venv key, the llama.cpp build key, the model bundles and the sha256 of each
    config file, kept as C(<root>/<id>/release.json) with C(current) and C(previous) links and
    a snapshot of the config files.
  - C(action=read) reports what runs now (C(state)), the current release with its bench result
    (C(release_current)) and, with C(target), what differs from that release (C(plan)).
  - C(action=record) records what runs as the current release; the one before becomes
    previous. Recording what is already current changes nothing.
  - C(action=restore) and C(action=finish) are the two halves of a rollback, around the
    restarts and the re-verification - restore puts back the target's app venv link and
    config files, finish makes the target current (and C(failed), if given, previous and
    marked failed).
  - C(action=mark) keeps a passing bench result with a release.
  - Check mode reports what would change and changes nothing; C(--diff) shows the current and
    previous release ids before and after.
options:
  action:
    description: What to do.
    type: str
    choices: [read, record, restore, finish, mark]
    default: read
  root:
    description: Releases directory on the unit.
    type: path
    default: /opt/voicefleet/releases
  app_dir:
    description: The voice service's app directory (venvs/, current).
    type: path
    default: /opt/voicefleet/app
  llamacpp_dir:
    description: The llama.cpp install directory (builds, current).
    type: path
    default: /opt/voicefleet/llama.cpp
  models_store:
    description: The models store (current/<role> links).
    type: path
    default: /opt/voicefleet/models
  config_files:
    description: Config files that belong to a release (hashed, snapshotted, restored).
    type: list
    elements: path
    default: []
  target:
    description: Release id, or C(previous) / C(current), for read (plan), restore and finish.
    type: str
  failed:
    description: For finish, the release that failed; it becomes previous, marked failed.
    type: str
  meta:
    description: For record, kept in the release record (who deployed, run id, versions).
    type: dict
    default: {}
  keep:
    description: For record, releases kept (current and previous always).
    type: int
    default: 5
  bench:
    description: For mark, the bench result file to keep with release C(target).
    type: path
  files:
    description:
      - For restore, only these of the release's config files (the calling role's own);
        default all of them.
    type: list
    elements: path
  app:
    description: For restore, also point the app at the release's venv.
    type: bool
    default: true
author: voicefleet (@voicefleet)
"""

EXAMPLES = r"""
- name: Record what runs as a release
  voicefleet.fleet.voicefleet_release:
    action: record
    config_files: [/etc/voicefleet/voicefleet.yaml]
    meta: {run_id: 20261201T120000Z}

- name: What differs from the previous release
  voicefleet.fleet.voicefleet_release:
    action: read
    target: previous
  register: release
"""

RETURN = r"""
state:
  description: What runs now (id, components, current, previous).
  returned: always
  type: dict
release_current:
  description: The current release record, its bench result and whether it is marked failed.
  returned: always
  type: dict
plan:
  description: For a target, its id (null when there is none) and what differs from it.
  returned: when target is given with action=read
  type: dict
result:
  description: What the action did or, in check mode, would do.
  returned: when action is not read
  type: dict
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.voicefleet.fleet.plugins.module_utils.release import (
    ReleaseError,
    Releases,
)


def links(rel: Releases) -> str:
    return f"current: {rel.current()}\nprevious: {rel.previous()}\n"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", default="read",
                        choices=["read", "record", "restore", "finish", "mark"]),
            root=dict(type="path", default="/opt/voicefleet/releases"),
            app_dir=dict(type="path", default="/opt/voicefleet/app"),
            llamacpp_dir=dict(type="path", default="/opt/voicefleet/llama.cpp"),
            models_store=dict(type="path", default="/opt/voicefleet/models"),
            config_files=dict(type="list", elements="path", default=[]),
            target=dict(type="str"),
            failed=dict(type="str"),
            meta=dict(type="dict", default={}),
            keep=dict(type="int", default=5),
            bench=dict(type="path"),
            files=dict(type="list", elements="path"),
            app=dict(type="bool", default=True),
        ),
        required_if=[("action", "restore", ["target"]), ("action", "finish", ["target"]),
                     ("action", "mark", ["target", "bench"])],
        supports_check_mode=True,
    )  # fmt: skip
    p = module.params
    rel = Releases(p["root"], p["app_dir"], p["llamacpp_dir"], p["models_store"])
    dry = module.check_mode
    before = links(rel)
    out: dict = {"changed": False}
    try:
        action = p["action"]
        if action == "record":
            if p["keep"] < 2:
                module.fail_json(msg="voicefleet_release: keep must be >= 2 (current + previous)")
            out["result"] = rel.record(p["config_files"], p["meta"], p["keep"], dry_run=dry)
            after = f"current: {out['result']['current']}\nprevious: {out['result']['previous']}\n"
        elif action in ("restore", "finish", "mark"):
            rid = rel.resolve(p["target"])
            if not rid:
                module.fail_json(msg=f"voicefleet_release: no {p['target']} release on this unit")
            if action == "restore":
                out["result"] = rel.restore(rid, dry_run=dry, files=p["files"], app=p["app"])
                after = before
            elif action == "finish":
                out["result"] = rel.finish(rid, p["failed"] or None, dry_run=dry)
                after = (
                    f"current: {out['result']['current']}\nprevious: {out['result']['previous']}\n"
                )
            else:
                out["result"] = rel.mark(rid, Path(p["bench"]), dry_run=dry)
                after = before
        else:
            after = before
            if p["target"]:
                out["plan"] = rel.plan(p["target"], p["config_files"])
        out["changed"] = bool(out.get("result", {}).get("changed", False))
        out["state"] = rel.state(p["config_files"])
        out["release_current"] = rel.show()
    except (ReleaseError, OSError, ValueError) as exc:
        module.fail_json(msg=f"voicefleet_release {p['action']}: {exc}")
    if out["changed"]:
        restored = out.get("result", {}).get("restored")
        out["diff"] = {"before": before, "after": after if not restored else
                       before + "".join(f"restored: {r}\n" for r in restored)}  # fmt: skip
    module.exit_json(**out)


if __name__ == "__main__":
    main()
