"""Parsing of the Jetson (L4T) platform surface, shared by library/jetson_*.py and unit tests.

Pure functions over text, no Ansible imports: the modules read the files (through overridable
paths) and run the tools; this file only understands what they say.
"""

from __future__ import annotations

import re

# Module part numbers (from the device-tree compatible string) -> what they are.
# p3767 is the Orin NX / Orin Nano family (the SoM), p3701 the AGX Orin.
MODULES = {
    "p3767-0000": {"module": "Jetson Orin NX 16GB", "family": "orin_nx", "memory_gb": 16},
    "p3767-0001": {"module": "Jetson Orin NX 8GB", "family": "orin_nx", "memory_gb": 8},
    "p3767-0003": {"module": "Jetson Orin Nano 8GB", "family": "orin_nano", "memory_gb": 8},
    "p3767-0004": {"module": "Jetson Orin Nano 4GB", "family": "orin_nano", "memory_gb": 4},
    "p3767-0005": {
        "module": "Jetson Orin Nano 8GB (devkit)",
        "family": "orin_nano",
        "memory_gb": 8,
    },
    "p3701-0000": {"module": "Jetson AGX Orin 32GB", "family": "agx_orin", "memory_gb": 32},
    "p3701-0004": {"module": "Jetson AGX Orin 32GB", "family": "agx_orin", "memory_gb": 32},
    "p3701-0005": {"module": "Jetson AGX Orin 64GB", "family": "agx_orin", "memory_gb": 64},
}

# L4T release -> JetPack version (JetPack 6.2 is the first with the "super" power modes).
JETPACK = {
    "36.4.4": "6.2.1",
    "36.4.3": "6.2",
    "36.4.0": "6.1",
    "36.3.0": "6.0",
    "35.6.0": "5.1.4",
    "35.5.0": "5.1.3",
    "35.4.1": "5.1.2",
    "35.3.1": "5.1.1",
}

SUPER_MODE = "MAXN_SUPER"

_PART_RE = re.compile(r"\b(p3[0-9]{3}-[0-9]{4})\b")
_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)")
_MODE_RE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)\s*>")
_DEFAULT_RE = re.compile(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>")
_QUERY_NAME_RE = re.compile(r"^NV Power Mode:\s*(\S+)\s*$")


def parse_compatible(raw: bytes | str) -> dict[str, object]:
    """Device-tree compatible: NUL-separated strings, e.g.
    ``nvidia,p3768-0000+p3767-0000-super\\0nvidia,p3767-0000\\0nvidia,tegra234\\0``.

    The module (SoM) part is the p3767/p3701 one; p3768/p3737 are carrier boards.
    """
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    entries = [e.strip() for e in text.split("\0") if e.strip()]
    is_tegra = any(e.startswith("nvidia,tegra") for e in entries)
    soc = next((e.split(",", 1)[1] for e in entries if e.startswith("nvidia,tegra")), None)
    part = None
    for entry in entries:
        for found in _PART_RE.findall(entry):
            if found in MODULES:
                part = found
                break
        if part:
            break
    info = MODULES.get(part or "", {})
    return {
        "compatible": entries,
        "is_jetson": is_tegra,
        "soc": soc,
        "part": part,
        "module": info.get("module"),
        "family": info.get("family"),
        "module_memory_gb": info.get("memory_gb"),
        "devicetree_super": any(e.endswith("-super") for e in entries),
    }


def parse_nv_tegra_release(text: str) -> dict[str, object]:
    """``# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ...``."""
    match = _RELEASE_RE.search(text)
    if not match:
        raise ValueError(f"not an nv_tegra_release line: {text.strip()[:80]!r}")
    major, minor, patch = (int(g) for g in match.groups())
    release = f"{major}.{minor}.{patch}"
    return {
        "l4t_release": release,
        "l4t_major": major,
        "l4t_revision": f"{minor}.{patch}",
        "jetpack": JETPACK.get(release),
    }


def parse_nvpmodel_conf(text: str) -> dict[str, object]:
    """Power modes of /etc/nvpmodel.conf: ``< POWER_MODEL ID=n NAME=x >`` blocks and the
    ``< PM_CONFIG DEFAULT=n >`` line. Comments (``#``) are ignored."""
    modes: list[dict[str, object]] = []
    default = None
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if m := _MODE_RE.search(line):
            modes.append({"id": int(m.group(1)), "name": m.group(2)})
        elif m := _DEFAULT_RE.search(line):
            default = int(m.group(1))
    if not modes:
        raise ValueError("no < POWER_MODEL ID=n NAME=x > entries in nvpmodel.conf")
    ids = [m["id"] for m in modes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate power mode IDs in nvpmodel.conf: {ids}")
    names = [str(m["name"]) for m in modes]
    return {
        "modes": modes,
        "by_name": {str(m["name"]): m["id"] for m in modes},
        "default_id": default,
        "default_name": next((m["name"] for m in modes if m["id"] == default), None),
        "super": SUPER_MODE in names,
    }


def parse_nvpmodel_query(text: str) -> dict[str, object]:
    """``nvpmodel -q``: optional ``NVPM WARN``/``NVPM ERROR`` lines, then
    ``NV Power Mode: NAME`` and the mode ID on the next line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if m := _QUERY_NAME_RE.match(line):
            rest = [x for x in lines[index + 1 :] if not x.startswith("NVPM")]
            if rest and rest[0].isdigit():
                return {"name": m.group(1), "id": int(rest[0])}
            raise ValueError(f"nvpmodel -q: no mode ID after 'NV Power Mode: {m.group(1)}'")
    raise ValueError("nvpmodel -q: no 'NV Power Mode:' line in: " + " | ".join(lines)[:200])


def nvpmodel_needs_reboot(output: str) -> bool:
    """`nvpmodel -m N` asks for a reboot (and, without a confirmation on a TTY, does not switch)."""
    return "reboot required" in output.lower()


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {field: bytes} for the ``kB`` fields."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            factor = 1024 if len(parts) > 2 and parts[2] == "kB" else 1
            out[parts[0]] = int(parts[1]) * factor
    return out


def resolve_mode(conf: dict[str, object], name: str) -> int:
    """The ID of the mode named ``name`` on this unit; ValueError with what to do otherwise."""
    by_name = conf["by_name"]
    if not isinstance(by_name, dict):
        raise TypeError(f"nvpmodel conf: by_name is {type(by_name).__name__}, not a mapping")
    if name in by_name:
        return int(by_name[name])
    listed = ", ".join(f"{m['id']}={m['name']}" for m in conf["modes"])  # type: ignore[attr-defined]
    hint = ""
    if name == SUPER_MODE:
        hint = (
            " This unit's firmware has no super power modes: flash the JetPack 6.2 (L4T R36.4.3+)"
            " super configuration (e.g. jetson-orin-nano-devkit-super.conf /"
            " p3768-0000+p3767-0000-super), or set jetson_power_mode to one of the listed modes."
        )
    raise ValueError(f"power mode {name!r} does not exist on this unit (modes: {listed}).{hint}")


def status_with_mode(status: str, mode_id: int) -> str:
    """nvpmodel's status file (``pmode:0002 fmode:quiet``) with the power mode replaced."""
    new = f"pmode:{mode_id:04d}"
    if re.search(r"pmode:\d+", status):
        return re.sub(r"pmode:\d+", new, status, count=1)
    return (new + " " + status.strip()).strip() + "\n"
