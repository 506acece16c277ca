"""`voicefleet fit`: the memory-fit preflight (app/fit.py) from the command line.

`voicefleet fit MODEL.gguf --inventory inventory/example --group orin_nx_16gb` reads the
device profiles and the tuned config from the inventory's group_vars (the one source of
truth); the llamacpp role's preflight runs the same command with the unit's MemAvailable.
A config that does not fit exits 1 with the numbers and what to lower.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from app.fit import (
    KV_TYPE_BYTES,
    MIB,
    DeviceProfile,
    FitConfig,
    FitInputError,
    FitReport,
    ModelShape,
    check_fit,
)
from app.gguf import GGUFError, read_header

# --- inputs --------------------------------------------------------------------------------


def read_mem_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise FitInputError(f"{meminfo}: no MemAvailable line")


def load_vars(paths: list[Path]) -> dict[str, Any]:
    """Merge YAML/JSON vars files in order (later wins), like Ansible group_vars."""
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise FitInputError(f"{path}: cannot read vars: {exc}") from exc
        if not isinstance(data, dict):
            raise FitInputError(f"{path}: expected a mapping of variables")
        merged.update(data)
    return merged


def inventory_vars_files(inventory: Path, group: str | None) -> list[Path]:
    """group_vars/all/*.yml then group_vars/GROUP/*.yml (also GROUP.yml files)."""
    files: list[Path] = []
    for name in ["all", group] if group else ["all"]:
        base = inventory / "group_vars" / name
        if base.is_dir():
            files += sorted(p for p in base.iterdir() if p.suffix in (".yml", ".yaml"))
        elif base.with_suffix(".yml").is_file():
            files.append(base.with_suffix(".yml"))
    if not files:
        raise FitInputError(f"{inventory}: no group_vars files for {group or 'all'}")
    return files


# Inventory variable -> FitConfig field (the same names the llamacpp role uses).
_CONFIG_VARS = {
    "llamacpp_ctx_per_slot": "ctx_per_slot",
    "llamacpp_parallel": "parallel",
    "llamacpp_kv_type": "kv_type",
    "llamacpp_ubatch": "ubatch",
    "llamacpp_fit_stt_budget_mib": "stt_budget_mib",
    "llamacpp_fit_tts_budget_mib": "tts_budget_mib",
    "llamacpp_fit_min_ctx_per_slot": "min_ctx_per_slot",
    "llamacpp_fit_headroom_fraction": "headroom_fraction",
}


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, str) and "{{" in value:
        raise FitInputError(
            f"{name} is a template ({value!r}): pass the value with a command-line option"
        )
    return value


def config_from_vars(variables: dict[str, Any]) -> FitConfig:
    kwargs: dict[str, Any] = {}
    for var, attr in _CONFIG_VARS.items():
        if var in variables:
            kind = type(getattr(FitConfig(), attr))
            try:
                kwargs[attr] = kind(_plain(var, variables[var]))
            except (TypeError, ValueError) as exc:
                raise FitInputError(f"{var}: invalid value {variables[var]!r}") from exc
    return FitConfig(**kwargs)


def profile_from_vars(
    variables: dict[str, Any], name: str | None, fallback: str | None = None
) -> DeviceProfile:
    """The named profile, else the `device_profile` var, else `fallback` (the group name)."""
    profiles = variables.get("device_profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise FitInputError("no device_profiles in the vars given (see group_vars/all)")
    name = name or _plain("device_profile", variables.get("device_profile")) or fallback
    if not name:
        raise FitInputError("no device profile chosen: pass --profile or set device_profile")
    if name not in profiles:
        raise FitInputError(f"unknown device profile {name!r} (known: {', '.join(profiles)})")
    return DeviceProfile.from_mapping(name, profiles[name])


# --- command line -------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="check that a model + llama-server config fits a unit's memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="GGUF file (only its header is read)")
    p.add_argument("--inventory", type=Path, help="read group_vars from this inventory")
    p.add_argument("--group", help="inventory group whose group_vars apply (e.g. orin_nx_16gb)")
    p.add_argument("--vars", type=Path, action="append", default=[], help="extra vars file")
    p.add_argument("--vars-json", help="vars as a JSON object (applied last)")
    p.add_argument("--profile", help="device profile name (default: device_profile var)")
    p.add_argument("--mem-available-mib", type=int, help="the unit's MemAvailable")
    p.add_argument("--meminfo", type=Path, help="read MemAvailable from this meminfo file")
    p.add_argument("--ctx-per-slot", type=int)
    p.add_argument("--parallel", type=int)
    p.add_argument("--kv-type", choices=sorted(KV_TYPE_BYTES))
    p.add_argument("--ubatch", type=int)
    p.add_argument("--stt-mib", type=int, dest="stt_budget_mib")
    p.add_argument("--tts-mib", type=int, dest="tts_budget_mib")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = _report_from_args(args)
    except (FitInputError, GGUFError, OSError) as exc:
        print(f"voicefleet fit: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0 if report.fits else 1


def _report_from_args(args: argparse.Namespace) -> FitReport:
    files = inventory_vars_files(args.inventory, args.group) if args.inventory else []
    variables = load_vars(files + args.vars)
    if args.vars_json:
        try:
            variables.update(json.loads(args.vars_json))
        except json.JSONDecodeError as exc:
            raise FitInputError(f"--vars-json: {exc}") from exc
    profile = profile_from_vars(variables, args.profile, args.group)
    names = ("ctx_per_slot", "parallel", "kv_type", "ubatch", "stt_budget_mib", "tts_budget_mib")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    config = replace(config_from_vars(variables), **overrides)
    model = ModelShape.from_header(read_header(args.model))
    if args.mem_available_mib is not None:
        mem, source = args.mem_available_mib * MIB, "given"
    elif args.meminfo is not None:
        mem, source = read_mem_available(args.meminfo), str(args.meminfo)
    elif profile.mem_available_mib is not None:
        mem, source = profile.mem_available_mib * MIB, f"typical for {profile.name}"
    else:
        mem, source = read_mem_available(), "this machine's /proc/meminfo"
    if not math.isfinite(profile.bandwidth_gb_s) or profile.bandwidth_gb_s <= 0:
        raise FitInputError(f"device profile {profile.name}: bandwidth_gb_s must be positive")
    return check_fit(model, profile, config, mem, source)
