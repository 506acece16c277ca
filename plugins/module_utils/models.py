"""Core of the voicefleet_models module: fetch, verify, install and roll back the catalog's
model bundles in a unit's store, with a plan first (check mode) and the store's current links
before and after (--diff).

The store itself is app/modelstore (one implementation, shared with `voicefleet models`): the
role ships it to units inside voicefleet-models.pyz, and `load_store(tool)` imports it from
there. This file decides what a run would change, applies it through that code, and says
what happened. Stdlib only, Python 3.10-compatible (a JetPack unit's python3).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROLES = ("llm", "stt", "tts")
MiB = 1024 * 1024


@dataclass
class StoreCode:
    catalog: ModuleType
    fetch: ModuleType
    sources: ModuleType
    store: ModuleType
    verify: ModuleType

    @property
    def failures(self) -> tuple[type[BaseException], ...]:
        return (
            self.catalog.CatalogError,
            self.fetch.FetchError,
            self.store.StoreError,
            self.verify.VerifyError,
            self.sources.SourceError,
            OSError,
        )


def load_store(tool: str | None) -> StoreCode:
    """Import app/modelstore, from the zipapp at `tool` when given (on a unit)."""
    if tool:
        if not Path(tool).is_file():
            raise FileNotFoundError(f"the models tool {tool} is missing")
        sys.path.insert(0, tool)
    from app.modelstore import catalog, fetch, sources, store, verify

    return StoreCode(catalog, fetch, sources, store, verify)


def links(store: Any) -> str:
    """The store's current bundle per role, as --diff shows it."""
    return "".join(f"{role}: {store.current(role) or '-'}\n" for role in ROLES)


def select(code: StoreCode, catalog: list[dict[str, Any]], names: list[str] | None) -> list[Any]:
    cat = code.catalog.parse_catalog(catalog)
    entries: list[Any] = cat.select(names or None)
    return entries


def check_catalog(code: StoreCode, catalog: list[dict[str, Any]]) -> list[str]:
    """Validate the catalog: pinned entries, one per role. Its names; else CatalogError."""
    cat = code.catalog.parse_catalog(catalog)
    cat.require_pinned(list(cat.entries))
    roles = [e.role for e in cat.entries]
    dup = sorted({r for r in roles if roles.count(r) > 1})
    if dup:
        raise code.catalog.CatalogError(f"more than one catalog entry for role(s) {', '.join(dup)}")
    return [e.name for e in cat.entries]


def plan(store: Any, entries: list[Any], activate: bool) -> dict[str, Any]:
    """What installing `entries` would do, reading only: per model its action (present,
    install, or replace a bundle that fails verification) and whether its role's link moves;
    `needed` maps each bundle to fetch to its file names (what a controller must deliver)."""
    models: dict[str, Any] = {}
    needed: dict[str, list[str]] = {}
    for e in entries:
        bundle = e.bundle_id
        if store.bundle_dir(bundle).exists():
            ok, _hashed, why = store.bundle_ok(e)
            action = "present" if ok else "replace"
        else:
            action, why = "install", ""
        if action != "present":
            needed[bundle] = [f.name for f in e.files]
        relink = activate and store.current(e.role) != bundle
        models[e.name] = {"role": e.role, "bundle": bundle, "action": action, "relink": relink}
        if why:
            models[e.name]["why"] = why
    changed = any(m["action"] != "present" or m["relink"] for m in models.values())
    return {"changed": changed, "models": models, "needed": needed}


def install(
    code: StoreCode, store: Any, entries: list[Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Fetch, verify and install each entry (and switch its link unless `activate` is false).
    A model that fails is named with why; what was installed before stays in place."""
    ctx = code.sources.FetchContext(timeout=params["timeout"], hf_endpoint=params["hf_endpoint"])
    if params.get("cache"):
        ctx.cache_dir = Path(params["cache"])
    if params.get("incoming"):
        ctx.incoming = Path(params["incoming"])
        ctx.incoming_move = True
    opts = code.fetch.FetchOptions(
        keep=params["keep"],
        margin=int(params["margin_mib"] * MiB),
        retries=params["retries"],
        backoff=params["backoff"],
        activate=params["activate"],
    )
    done: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for e in entries:
        try:
            o = code.fetch.ensure(store, e, ctx, opts)
        except code.failures as exc:
            failed[e.name] = str(exc)
            continue
        done[e.name] = {"role": e.role, "bundle": e.bundle_id, "action": o.action,
                        "relink": o.link_changed, "pruned": o.pruned,
                        "hashed_bytes": o.hashed_bytes, "changed": o.changed}  # fmt: skip
    changed = any(m["changed"] for m in done.values())
    return {"changed": changed, "models": done, "failed_models": failed}


def rollback_target(store: Any, role: str) -> str | None:
    """The bundle Store.rollback would point `role` at (the newest earlier one still present)."""
    current = store.current(role)
    for item in reversed([h for h in store.history(role) if h["bundle"] != current]):
        if store.bundle_dir(item["bundle"]).is_dir():
            bundle: str = item["bundle"]
            return bundle
    return None


def rollback(
    code: StoreCode, store: Any, roles: list[str], entries: list[Any], dry_run: bool
) -> dict[str, Any]:
    """Point each role back at its previous bundle (verified first). Fails on a role with
    nothing to roll back to, before any role is switched."""
    targets = {role: rollback_target(store, role) for role in roles}
    missing = [role for role, bundle in targets.items() if bundle is None]
    if missing:
        raise code.store.StoreError(
            f"no earlier {', '.join(missing)} model in {store.root} to roll back to"
        )
    moved = {role: {"from": store.current(role), "to": targets[role]} for role in roles}
    if not dry_run:
        by_bundle = {e.bundle_id: e for e in entries if not e.unpinned_reason()}
        with store.locked():
            for role in roles:
                moved[role]["to"] = store.rollback(role, by_bundle)
    return {"changed": bool(moved), "rolled_back": moved}


def installed(store: Any) -> dict[str, Any]:
    """What each role serves now (the models_installed fact): name, sha256, paths, files."""
    rows: dict[str, Any] = {}
    for role in ROLES:
        inst = store.installed(role)
        if inst is None:
            continue
        rows[role] = {
            "name": inst.name,
            "sha256": inst.bundle,
            "dir": str(store.current_link(role)),
            "bundle_dir": str(inst.dir),
            "files": list(inst.files),
            "versions": store.history(role),
        }
    return rows


def run(params: dict[str, Any], check_mode: bool, code: StoreCode) -> dict[str, Any]:
    """The module's whole run: returns its result (`failed` + `msg` when a model failed);
    raises one of code.failures when the request cannot be done at all."""
    action = params["action"]
    catalog = params.get("catalog") or []
    if action == "check":
        names = check_catalog(code, catalog)
        return {"changed": False, "models": names, "msg": f"{len(names)} models pinned"}
    store = code.store.Store(params["store"])
    before = links(store)
    result: dict[str, Any]
    if action == "rollback":
        entries = select(code, catalog, None) if catalog else []
        result = rollback(code, store, params["roles"], entries, dry_run=check_mode)
    else:
        entries = select(code, catalog, params.get("names"))
        if action in ("install", "fetch"):
            code.catalog.parse_catalog(catalog).require_pinned(entries)
        activate = action == "install" and params["activate"]
        result = plan(store, entries, activate)
        if action in ("install", "fetch") and not check_mode and result["changed"]:
            store.init()
            applied = install(code, store, entries, {**params, "activate": activate})
            result = {**applied, "needed": result["needed"]}
        elif action == "read":
            result["changed"] = False
    if action in ("install", "rollback", "read"):
        result["installed"] = installed(store)
    after = links(store)
    if check_mode and result["changed"]:
        after = "".join(
            f"{role}: {target}\n" for role, target in _would_point(store, result).items()
        )
    if result["changed"]:
        result["diff"] = {"before": before, "after": after}
    if result.get("failed_models"):
        result["msg"] = "models: " + "; ".join(
            f"{name}: {why}" for name, why in result["failed_models"].items()
        )
    return result


def _would_point(store: Any, result: dict[str, Any]) -> dict[str, str]:
    links_now = {role: store.current(role) or "-" for role in ROLES}
    for m in result.get("models", {}).values():
        if m.get("relink"):
            links_now[m["role"]] = m["bundle"]
    for role, move in result.get("rolled_back", {}).items():
        links_now[role] = move["to"]
    return links_now
