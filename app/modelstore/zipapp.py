"""Build the self-contained `voicefleet-models.pyz` the `models` role runs on units.

It holds app/gguf.py and app/modelstore/ (stdlib-only at import), so a unit needs nothing but
python3 to verify and install models with exactly the code the controller runs. The archive
is deterministic (fixed timestamps, sorted members): rebuilding it changes nothing on units.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

APP = Path(__file__).resolve().parent.parent
MAIN = "import sys\nfrom app.modelstore.cli import main\nsys.exit(main())\n"
EPOCH = (1980, 1, 1, 0, 0, 0)


def members() -> list[tuple[str, Path | str]]:
    out: list[tuple[str, Path | str]] = [
        ("__main__.py", MAIN),
        ("app/__init__.py", APP / "__init__.py"),
        ("app/gguf.py", APP / "gguf.py"),
    ]
    for p in sorted((APP / "modelstore").rglob("*.py")):
        out.append((f"app/{p.relative_to(APP).as_posix()}", p))
    return out


def build(output: Path) -> bool:
    """Write the zipapp; return True when its bytes changed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with open(tmp, "wb") as raw:
        raw.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, src in members():
                info = zipfile.ZipInfo(name, EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                data = src.encode() if isinstance(src, str) else src.read_bytes()
                zf.writestr(info, data)
    changed = not output.exists() or output.read_bytes() != tmp.read_bytes()
    if changed:
        tmp.chmod(0o755)
        os.replace(tmp, output)
    else:
        tmp.unlink()
    return changed
