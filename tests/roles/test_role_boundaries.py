"""The roles stand alone, as a collection's roles must: none reaches outside its role or the
collection (`role_path/../..`, `playbook_dir | dirname`), and none carries a `default('…')`
copy of another role's variable (shared names are defaults of roles/common, which every role
depends on)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/main.yml"))
CONTENT = sorted(
    p
    for pattern in ("roles/**/*.yml", "roles/**/*.j2", "playbooks/*.yml")
    for p in ROOT.glob(pattern)
)
# Every role default (and the shared ones), with the role whose defaults define it.
DEFAULTS = {
    name: p.parent.parent.name
    for p in ROOT.glob("roles/*/defaults/main.yml")
    for name in (yaml.safe_load(p.read_text()) or {})
}
# `a_default | default(...)`: a copy of that variable's default where it is read. The one
# fallback allowed is the same shared name (`hostvars[unit].llamacpp_port | default(llamacpp_port)`:
# another host's inventory value, else this host's default): that copies nothing.
COPY = re.compile(r"\b(" + "|".join(sorted(DEFAULTS)) + r")\s*\|\s*default\((?!\s*\1\s*\))")


def test_no_task_reaches_outside_its_role_or_collection() -> None:
    escapes = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in CONTENT
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"role_path\s*\}\}/\.\.|role_path\s*~\s*'/\.\.|role_path\s*\|\s*dirname"
                     r"|playbook_dir\s*\|\s*dirname|playbook_dir\s*~\s*'/\.\.", line)
    ]  # fmt: skip
    assert not escapes, escapes


def test_no_role_copies_another_roles_default() -> None:
    assert len(DEFAULTS) > 50 and DEFAULTS["llamacpp_port"] == "common"
    copies = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in CONTENT
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if COPY.search(line)
    ]
    assert not copies, copies


def test_every_role_depends_on_the_shared_defaults() -> None:
    for role in ROLES:
        if role == "common":
            continue
        meta = yaml.safe_load((ROOT / "roles" / role / "meta/main.yml").read_text())
        assert "voicefleet.fleet.common" in meta["dependencies"], role


def test_the_copy_check_tells_a_copy_from_a_shared_fallback() -> None:
    assert COPY.search("{{ models_catalog | default([]) }}")
    assert COPY.search("{{ hostvars[u].llamacpp_port | default(8080) }}")
    assert not COPY.search("{{ hostvars[u].llamacpp_port | default(llamacpp_port) }}")


def test_roles_and_playbooks_are_addressed_by_fqcn() -> None:
    """A role of this collection named without voicefleet.fleet. resolves only from a checkout
    (roles_path), not from an installed collection; a playbook imports its siblings by file
    name (they ship side by side) or others by FQCN."""
    plain = []
    for p in CONTENT:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            m = re.match(r"\s*(?:-\s+)?(?:role|ansible\.builtin\.import_playbook):\s*(\S+)", line)
            sibling = re.fullmatch(r"[\w-]+\.yml", m.group(1)) if m else None  # playbooks/ itself
            if m and not sibling and not m.group(1).startswith(("voicefleet.fleet.", "{{")):
                plain.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
            m = re.match(r"\s*name:\s*(\S+)\s*$", line)
            if (
                m
                and m.group(1) in ROLES
                and "include_role" in "".join(p.read_text().splitlines()[max(0, n - 3) : n])
            ):
                plain.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not plain, plain
