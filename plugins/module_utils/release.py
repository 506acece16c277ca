"""Releases on a unit: what runs (app venv, llama.cpp build, model bundles, config files),
recorded as <releases>/<id>/release.json with `current` and `previous` links.

The id is a hash of what runs (no timestamps): deploying the same thing twice records nothing.
Config files are snapshotted into the release so a rollback restores them byte for byte.
The core of the voicefleet_release module (plugins/modules/voicefleet_release.py): stdlib
only and Python 3.10-compatible (a JetPack unit's python3). Every change can be planned
first (`dry_run=True`: what would change, nothing written), for the module's check mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

ROLES = ("llm", "stt", "tts")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def link_name(path: Path) -> str | None:
    return os.path.basename(os.readlink(path)) if path.is_symlink() else None


class ReleaseError(RuntimeError):
    """What was asked cannot be done (no such release, its app venv is gone, ...)."""


class Releases:
    def __init__(self, root: str, app_dir: str, llamacpp_dir: str, models_store: str) -> None:
        self.root = Path(root)
        self.app_dir = Path(app_dir)
        self.llamacpp_dir = Path(llamacpp_dir)
        self.models_store = Path(models_store)

    # --- what runs now --------------------------------------------------------------------
    def components(self, config_files: list[str]) -> dict[str, Any]:
        app_key = link_name(self.app_dir / "current")
        info_path = self.app_dir / "venvs" / str(app_key) / ".complete"
        app_info = json.loads(info_path.read_text()) if app_key and info_path.is_file() else {}
        config = {}
        for name in sorted(config_files):
            p = Path(name)
            config[name] = sha256_file(p) if p.is_file() else None
        return {
            "app": {"key": app_key, "version": app_info.get("version")},
            "llamacpp": {"build_key": link_name(self.llamacpp_dir / "current")},
            "models": {r: link_name(self.models_store / "current" / r) for r in ROLES},
            "config": config,
        }

    @staticmethod
    def release_id(components: dict[str, Any]) -> str:
        blob = json.dumps(components, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def current(self) -> str | None:
        return link_name(self.root / "current")

    def previous(self) -> str | None:
        return link_name(self.root / "previous")

    def load(self, rid: str) -> dict[str, Any]:
        path = self.root / rid / "release.json"
        if not path.is_file():
            raise ReleaseError(f"no release {rid} under {self.root}")
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def resolve(self, target: str) -> str | None:
        return (
            self.previous()
            if target == "previous"
            else (self.current() if target == "current" else target)
        )

    def set_link(self, name: str, rid: str) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(rid)
        os.replace(tmp, self.root / name)

    # --- commands ---------------------------------------------------------------------------
    def state(self, config_files: list[str]) -> dict[str, Any]:
        comps = self.components(config_files)
        return {
            "id": self.release_id(comps),
            "components": comps,
            "current": self.current(),
            "previous": self.previous(),
        }

    def record(
        self, config_files: list[str], meta: dict[str, Any], keep: int, dry_run: bool = False
    ) -> dict[str, Any]:
        comps = self.components(config_files)
        rid = self.release_id(comps)
        before = self.current()
        if before == rid:
            return {"changed": False, "id": rid, "current": rid, "previous": self.previous()}
        if dry_run:
            return {"changed": True, "id": rid, "current": rid, "previous": before}
        self.root.mkdir(parents=True, exist_ok=True)
        rdir = self.root / rid
        if not (rdir / "release.json").is_file():
            stage = self.root / f".incoming-{rid}"
            shutil.rmtree(stage, ignore_errors=True)
            (stage / "files").mkdir(parents=True)
            files = {}
            for name, digest in comps["config"].items():
                if digest is None:
                    continue
                src = Path(name)
                st = src.stat()
                shutil.copy2(src, stage / "files" / digest)
                files[name] = {"sha256": digest, "mode": st.st_mode & 0o7777, "uid": st.st_uid,
                               "gid": st.st_gid}  # fmt: skip
            release = {
                "id": rid,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "components": comps,
                "files": files,
                "meta": meta,
            }
            (stage / "release.json").write_text(json.dumps(release, indent=1) + "\n")
            os.chmod(stage, 0o700)
            shutil.rmtree(rdir, ignore_errors=True)
            os.replace(stage, rdir)
        else:  # deploying a release again (e.g. after a rollback): it is no longer failed
            (rdir / "failed.json").unlink(missing_ok=True)
        if before:
            self.set_link("previous", before)
        self.set_link("current", rid)
        self.prune(keep)
        return {"changed": True, "id": rid, "current": rid, "previous": before}

    def plan(self, target: str, config_files: list[str]) -> dict[str, Any]:
        rid = self.resolve(target)
        if not rid:
            return {"target": None, "reason": f"no {target} release on this unit"}
        want = self.load(rid)["components"]
        have = self.components(sorted(set(config_files) | set(want["config"])))
        return {
            "target": rid,
            "current": self.current(),
            "differ": {
                "models": [r for r in ROLES if want["models"].get(r) != have["models"].get(r)],
                "llamacpp": want["llamacpp"]["build_key"] != have["llamacpp"]["build_key"],
                "app": want["app"]["key"] != have["app"]["key"],
                "config": sorted(
                    k for k, v in want["config"].items() if have["config"].get(k) != v
                ),
            },
            "target_components": want,
        }

    def restore(
        self,
        rid: str,
        dry_run: bool = False,
        files: list[str] | None = None,
        app: bool = True,
    ) -> dict[str, Any]:
        """Put back release `rid`'s app venv link (unless `app` is false) and its snapshots of
        `files` (default: all its config files) where they differ. The role that owns a file
        restores it (its rollback entry point names its own files)."""
        release = self.load(rid)
        restored = []
        app_key = release["components"]["app"]["key"] if app else None
        app_differs = bool(app_key) and link_name(self.app_dir / "current") != app_key
        if app_differs and not (self.app_dir / "venvs" / app_key / ".complete").is_file():
            raise ReleaseError(f"app venv {app_key} of release {rid} is gone")
        wanted = release["files"] if files is None else {
            name: spec for name, spec in release["files"].items() if name in files
        }  # fmt: skip
        for name, spec in wanted.items():
            dest = Path(name)
            if not (dest.is_file() and sha256_file(dest) == spec["sha256"]):
                restored.append(name)
        if app_differs:
            restored.insert(0, "app")
        if dry_run or not restored:
            return {"changed": bool(restored), "restored": restored}
        if "app" in restored:
            tmp = self.app_dir / ".current.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(f"venvs/{app_key}")
            os.replace(tmp, self.app_dir / "current")
        for name, spec in release["files"].items():
            dest = Path(name)
            if name not in restored:
                continue
            tmp = dest.with_name(f".{dest.name}.restore")
            shutil.copyfile(self.root / rid / "files" / spec["sha256"], tmp)
            os.chown(tmp, spec["uid"], spec["gid"])
            os.chmod(tmp, spec["mode"])
            os.replace(tmp, dest)
        return {"changed": True, "restored": restored}

    def finish(self, rid: str, failed: str | None, dry_run: bool = False) -> dict[str, Any]:
        self.load(rid)
        before = self.current()
        if dry_run:
            prev = failed if failed else (before if before and before != rid else self.previous())
            return {"changed": before != rid or bool(failed), "current": rid, "previous": prev}
        if failed and (self.root / failed / "release.json").is_file():
            note = {"failed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "back_to": rid}
            (self.root / failed / "failed.json").write_text(json.dumps(note) + "\n")
            self.set_link("previous", failed)
        elif before and before != rid:
            self.set_link("previous", before)
        self.set_link("current", rid)
        return {
            "changed": before != rid or bool(failed),
            "current": rid,
            "previous": self.previous(),
        }

    def mark(self, rid: str, bench: Path, dry_run: bool = False) -> dict[str, Any]:
        self.load(rid)
        dest = self.root / rid / "bench.json"
        changed = not dest.is_file() or dest.read_bytes() != bench.read_bytes()
        if changed and not dry_run:
            shutil.copyfile(bench, dest)
        return {"changed": changed, "id": rid, "bench": str(dest)}

    def show(self) -> dict[str, Any]:
        rid = self.current()
        if not rid:
            return {"current": None, "previous": self.previous()}
        bench = self.root / rid / "bench.json"
        return {
            "current": rid,
            "previous": self.previous(),
            "release": self.load(rid),
            "bench": json.loads(bench.read_text()) if bench.is_file() else None,
            "failed": (self.root / rid / "failed.json").is_file(),
        }

    def prune(self, keep: int) -> None:
        protect = {self.current(), self.previous()}
        rels = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and (p / "release.json").is_file()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for p in rels[keep:]:
            if p.name not in protect:
                shutil.rmtree(p)
