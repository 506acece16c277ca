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
# `a_default | default(...)`: a copy of that variable's default where it is read.
COPY = re.compile(r"\b(" + "|".join(sorted(DEFAULTS)) + r")\s*\|\s*default\(")


def test_no_task_reaches_outside_its_role_or_collection() -> None:
    escapes = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in CONTENT
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"role_path\s*\}\}/\.\.|role_path\s*\|\s*dirname|playbook_dir\s*\|\s*dirname"
                     r"|playbook_dir\s*~\s*'/\.\.", line)
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
