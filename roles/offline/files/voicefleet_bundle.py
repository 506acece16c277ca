#!/usr/bin/env python3
"""voicefleet-bundle: a signed offline bundle, packed on the controller, applied by a unit itself.

    voicefleet-bundle pack --plan PLAN.json --key KEY --out DIR      (controller; roles/offline)
    voicefleet-bundle verify BUNDLE.tar                               (anyone with the signers)
    voicefleet-bundle apply BUNDLE.tar [-- ANSIBLE-PLAYBOOK ARGS]      (the unit, as root)

A bundle is one uncompressed tar (manifest.json first, then the collection, the inventory, and a
VOICEFLEET_HOME with the controller's caches: wheelhouses, llama.cpp artifacts, model bundles)
and its OpenSSH signature BUNDLE.tar.sig (`ssh-keygen -Y sign`, namespace voicefleet-bundle)
over the whole archive. `apply` checks the signature against the unit's allowed signers before
it writes anything; the bytes it unpacks are the bytes it verified (hashed on both passes). Then
it installs the bundle's ansible-core driver venv (hash-locked wheels, no index) and runs the
collection's site.yml on the unit itself (`-c local`): the same preflight, gate and rollback as a
push. The unit's report stays under STATE/reports/<run>/ (`.pending`) until the controller's
voicefleet.fleet.offline_collect fetches it. Python 3.10 stdlib only (a unit's system python3).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

NAMESPACE = "voicefleet-bundle"
CONF = Path(os.environ.get("VOICEFLEET_OFFLINE_CONF", "/etc/voicefleet/offline"))
STATE = Path(os.environ.get("VOICEFLEET_OFFLINE_STATE", "/var/lib/voicefleet/offline"))
CHUNK = 1 << 20
# Where the controller's caches sit in the bundle's home/ (the unit's VOICEFLEET_HOME): the
# roles' defaults under voicefleet_controller_home.
HOME_WHEELHOUSE = "home/wheelhouse"
HOME_ARTIFACTS = "home/llama.cpp/artifacts"
HOME_MODELS = "home/controller-models/store"
EXIT_REFUSED = 3  # bad signature, not for this unit, a target the bundle lacks


class Refused(Exception):
    """The bundle is not applied; nothing on the unit changed."""


# --- signatures -------------------------------------------------------------------------------


def sign(path: Path, key: str) -> Path:
    sig = Path(str(path) + ".sig")
    sig.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", NAMESPACE, str(path)],
                   check=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return sig


def verify(fh, sig: Path, allowed: Path) -> tuple[str, str]:
    """Check the signature of the open file's bytes; returns (principal, sha256 of the bytes)."""
    if not allowed.is_file():
        raise Refused(f"no allowed signers at {allowed}: enrol the unit (roles/offline) first")
    if not sig.is_file():
        raise Refused(f"no signature {sig} beside the bundle")
    found = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f",
                            str(allowed)], capture_output=True, text=True, check=False)  # fmt: skip
    principals = found.stdout.split()
    if found.returncode != 0 or not principals:
        raise Refused(f"{sig}: signed by a key that is not in {allowed}")
    digest = hashlib.sha256()
    proc = subprocess.Popen(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I",
                             principals[0], "-n", NAMESPACE, "-s", str(sig)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    assert proc.stdin is not None
    fh.seek(0)
    with contextlib.suppress(BrokenPipeError):
        while block := fh.read(CHUNK):
            digest.update(block)
            proc.stdin.write(block)
    proc.stdin.close()
    said = proc.stdout.read().decode(errors="replace").strip() if proc.stdout else ""
    if proc.wait() != 0:
        raise Refused(f"bad signature: the bundle is not what {principals[0]} signed ({said})")
    return principals[0], digest.hexdigest()


# --- pack (controller) ------------------------------------------------------------------------


def layout(plan: dict) -> tuple[dict, list[tuple[str, str, bool]]]:
    """The manifest and the (source, name in the archive, follow links) of a plan: the staged
    collection and run files, the inventories, and the controller's caches laid out as the
    unit's VOICEFLEET_HOME (home/), where the roles' controller-side tasks find them."""
    stage = plan["stage"]
    members = [(f"{stage}/collections", "collections", False),
               (f"{stage}/ansible.cfg", "ansible.cfg", False),
               (f"{stage}/apply-vars.json", "apply-vars.json", False),
               (f"{stage}/current", "home/controller-models/store/current", False)]  # fmt: skip
    inventories = []
    for i, source in enumerate(plan["inventories"]):
        # a file's group_vars/ and host_vars/ sit beside it: carry its directory
        where = Path(source) if Path(source).is_dir() else Path(source).parent
        members.append((str(where), f"inventory/{i}", True))  # group_vars may be links
        inventories.append(
            f"inventory/{i}" + ("" if where == Path(source) else f"/{Path(source).name}")
        )
    targets = {}
    for target, build in plan["wheelhouses"].items():
        entry = {"wheel": build["wheel"], "key": build["key"]}
        for part in ("deps", "app", "driver"):
            entry[part] = f"{HOME_WHEELHOUSE}/{Path(build[part + '_dir']).name}"
            if (build[part + "_dir"], entry[part], False) not in members:
                members.append((build[part + "_dir"], entry[part], False))
        targets[target] = entry
    for artifact in plan["artifacts"]:
        members.append((artifact, f"{HOME_ARTIFACTS}/{Path(artifact).name}", False))
    for bundle in plan["models"]:
        members.append((bundle, f"{HOME_MODELS}/{Path(bundle).name}", False))
    manifest = {"format": 1, "id": plan["id"], "units": plan["units"], "targets": targets,
                "playbook": plan["playbook"], "inventories": inventories,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    return manifest, members


def pack(plan_path: Path, key: str, out: Path) -> dict[str, object]:
    start = time.monotonic()
    manifest, members = layout(json.loads(plan_path.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"voicefleet-bundle-{manifest['id']}.tar"
    tmp = out / f".{final.name}.tmp"
    data = json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))
        for src, arcname, follow in members:
            tar.dereference = follow
            tar.add(src, arcname=arcname, filter=_skip_bytecode)
    os.replace(tmp, final)
    sig = sign(final, key)
    digest = hashlib.sha256()
    with open(final, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return {"changed": True, "bundle": str(final), "signature": str(sig), "id": manifest["id"],
            "sha256": digest.hexdigest(), "bytes": final.stat().st_size,
            "seconds": round(time.monotonic() - start, 1)}  # fmt: skip


def _skip_bytecode(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name
    return None if name.endswith(".pyc") or "/__pycache__" in name else info


# --- apply (unit) -----------------------------------------------------------------------------


class HashingReader:
    """Reads a file for tarfile while hashing what it hands out."""

    def __init__(self, fh) -> None:
        self.fh, self.digest = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        block = self.fh.read(n)
        self.digest.update(block)
        return block


def unpack(fh, dest: Path, expected_sha: str) -> None:
    fh.seek(0)
    reader = HashingReader(fh)
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - CPython before 3.10.12
            tar.extractall(dest)
    while reader.read(CHUNK):
        pass
    if reader.digest.hexdigest() != expected_sha:
        raise Refused("the bundle changed while it was read (verified bytes != unpacked bytes)")


def probe(python: str) -> str | None:
    code = ("import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine(), "
            "platform.libc_ver()[1])")  # fmt: skip
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def pick_python(identity: dict[str, str], targets: dict[str, object]) -> tuple[str, str]:
    """The interpreter the driver venv is made from: the service's (enrolment recorded it), or
    the first CPython whose target (version, machine, glibc) the bundle carries wheels for."""
    candidates = [identity.get("python") or "", "/usr/bin/python3.11", "/usr/bin/python3"]
    seen = []
    for python in dict.fromkeys(c for c in candidates if c):
        target = probe(python)
        if target in targets:
            return python, target
        seen.append(f"{python}: {target or 'missing'}")
    raise Refused(
        f"the bundle carries wheels for {sorted(targets)}; this unit's interpreters "
        f"are {'; '.join(seen)} (build it with offline_unit_target set to the unit's)"
    )


def ensure_driver(python: str, root: Path, target: dict[str, str], collection: Path) -> Path:
    """A venv with the service's closure (app.cli for the fit and the report) plus ansible-core,
    installed from the bundle's hash-locked wheels; kept per key, reused by the next bundle."""
    sums = b"".join((root / target[k] / "SHA256SUMS").read_bytes() for k in ("deps", "driver"))
    key = hashlib.sha256(sums + python.encode()).hexdigest()[:16]
    venv = STATE / f"driver-{key}"
    if (venv / ".complete").is_file():
        return venv
    for old in STATE.glob("driver-*"):
        shutil.rmtree(old, ignore_errors=True)
    wheels = STATE / "staging" / "driver-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    for part in ("deps", "app"):
        for f in (root / target[part]).iterdir():
            if f.is_file() and not f.name.startswith("."):  # wheels, requirements.txt
                os.symlink(f, wheels / f.name)
    script = collection / "roles/voice_service/files/install_closure.sh"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = str(venv / "bin/python")
    subprocess.run(["sh", str(script), str(wheels), py, target["wheel"]], check=True)
    driver = root / target["driver"]
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-index", "--require-hashes", "--find-links", str(driver),
                    "-r", str(driver / "requirements.txt")], check=True)  # fmt: skip
    subprocess.run([py, "-m", "pip", "check", "--disable-pip-version-check"], check=True)
    (venv / ".complete").write_text(key + "\n")
    return venv


def read_manifest(fh) -> dict:
    """The manifest (the archive's first member), read from the verified file, nothing written."""
    fh.seek(0)
    with tarfile.open(fileobj=fh, mode="r|") as tar:  # type: ignore[call-overload]
        first = tar.next()
        member = tar.extractfile(first) if first and first.name == "manifest.json" else None
        if member is None:
            raise Refused("the archive does not start with manifest.json")
        return json.load(member)


def apply(bundle: Path, sig: Path | None, extra: list[str]) -> int:
    conf = CONF / "unit.json"
    identity = json.loads(conf.read_text()) if conf.is_file() else {}
    unit = identity.get("unit") or ""
    with open(bundle, "rb") as fh:
        principal, sha = verify(fh, sig or Path(str(bundle) + ".sig"), CONF / "allowed_signers")
        print(f"voicefleet-bundle: {bundle.name}: good signature by {principal}", flush=True)
        manifest = read_manifest(fh)
        if unit not in manifest["units"]:
            raise Refused(f"the bundle is for {manifest['units']}, not this unit "
                          f"({unit or 'not enrolled: no ' + str(conf)})")  # fmt: skip
        python, target = pick_python(identity, manifest["targets"])
        # Nothing was written before this line.
        (STATE / "staging").mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(STATE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            staging = Path(tempfile.mkdtemp(prefix="bundle-", dir=STATE / "staging"))
            try:
                unpack(fh, staging, sha)
                return _run(
                    staging,
                    manifest,
                    unit,
                    python,
                    target,
                    {"signer": principal, "sha256": sha},
                    extra,
                )
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                shutil.rmtree(STATE / "staging" / "driver-wheels", ignore_errors=True)


def _run(staging: Path, manifest: dict, unit: str, python: str, target: str,
         signed: dict[str, str], extra: list[str]) -> int:  # fmt: skip
    home, collections = staging / "home", staging / "collections"
    collection = collections / "ansible_collections/voicefleet/fleet"
    venv = ensure_driver(python, staging, manifest["targets"][target], collection)
    run_id = manifest["id"]
    reports = STATE / "reports"
    run_dir = reports / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(venv / "bin/ansible-playbook")]
    for inventory in manifest["inventories"]:
        argv += ["-i", str(staging / inventory)]
    argv += ["--limit", unit, "-c", "local", "-e", f"@{staging / 'apply-vars.json'}",
             "-e", json.dumps({"ansible_connection": "local",  # over an inventory's ssh
                               "fleet_report_root": str(reports), "rollout_run_id": run_id,
                               "voicefleet_controller_home": str(home),
                               "llamacpp_controller_home": str(home),
                               "models_controller_cache": str(staging / Path(HOME_MODELS).parent),
                               "voice_service_wheelhouse_root": str(staging / HOME_WHEELHOUSE)}),
             manifest["playbook"], *extra]  # fmt: skip
    env = {"PATH": f"{venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "VOICEFLEET_HOME": str(home), "ANSIBLE_COLLECTIONS_PATH": str(collections),
           "ANSIBLE_CONFIG": str(staging / "ansible.cfg"), "PWD": str(staging),
           "ANSIBLE_LOCAL_TEMP": str(staging / ".ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
           "PYTHONUNBUFFERED": "1"}  # the log follows the run line by line  # fmt: skip
    started = time.time()
    with open(run_dir / f"{unit}.ansible.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=staging, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    record = {"unit": unit, "bundle": run_id, "rc": rc, "target": target, "started": started,
              "seconds": round(time.time() - started, 1), **signed}  # fmt: skip
    (run_dir / f"{unit}.apply.json").write_text(json.dumps(record, indent=1) + "\n")
    (run_dir / ".pending").write_text(f"{unit}\n")
    print(f"voicefleet-bundle: {run_id}: ansible-playbook exited {rc}; report in {run_dir}")
    return rc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="voicefleet-bundle", description=__doc__.split("\n", maxsplit=1)[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_pack = sub.add_parser("pack", help="controller: write and sign a bundle from a plan")
    p_pack.add_argument("--plan", type=Path, required=True)
    p_pack.add_argument("--key", required=True, help="the signing key (ssh-keygen -Y sign -f)")
    p_pack.add_argument("--out", type=Path, required=True)
    for name in ("verify", "apply"):
        p = sub.add_parser(name, help=f"{name} a bundle (BUNDLE.tar + BUNDLE.tar.sig)")
        p.add_argument("bundle", type=Path)
        p.add_argument("--signature", type=Path, help="default: BUNDLE.sig")
        if name == "apply":
            p.add_argument("extra", nargs="*", help="more ansible-playbook arguments (after --)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "pack":
            print(json.dumps(pack(args.plan, args.key, args.out)))
            return 0
        if args.cmd == "verify":
            with open(args.bundle, "rb") as fh:
                sig = args.signature or Path(str(args.bundle) + ".sig")
                principal, sha = verify(fh, sig, CONF / "allowed_signers")
            print(json.dumps({"signer": principal, "sha256": sha}))
            return 0
        return apply(args.bundle, args.signature, args.extra)
    except Refused as why:
        print(f"voicefleet-bundle: refused: {why}; nothing on this unit was changed",
              file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
