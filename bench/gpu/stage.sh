#!/usr/bin/env bash
# Stage what bench/gpu/run.sh needs on a GPU box that reaches no package registry, into
# .gpu/ (ignored by git; carried with the working tree): the pinned llama.cpp source,
# repacked small (bench/gpu/pack_source.sh), and the service's pure-Python wheels at the
# project's pinned versions (the box has numpy, httpx, PyYAML; not FastAPI, pydantic or
# aiohttp, uvloop and httptools, whose compiled wheels are fetched for the box's CPython 3.12).
# Run it here, where the sdist cache and PyPI are: bench/gpu/stage.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
# shellcheck disable=SC1091
source scripts/pins.env
sdist=${VOICEFLEET_HOME:-$HOME/.cache/voicefleet}/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
[[ -f $sdist ]] || { echo "$sdist missing: run make setup" >&2; exit 1; }
echo "$LLAMA_CPP_PYTHON_SHA256  $sdist" | sha256sum -c --quiet
# the same name as the sdist: the build tree and the build key use it
bench/gpu/pack_source.sh "$sdist" ".gpu/$(basename "$sdist")"
# the versions installed in .venv from pyproject.toml's pins
mapfile -t wheels < <(.venv/bin/python - <<'PY'
from importlib.metadata import version
for name in ["fastapi", "starlette", "pydantic", "pydantic_core", "pydantic-settings",
             "python-dotenv", "uvicorn", "python-multipart", "annotated-types",
             "typing-inspection", "typing_extensions", "opentelemetry-api", "annotated-doc",
             "anyio", "h11", "httpx", "httpcore", "prometheus_client", "websockets",
             "wyoming", "aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist",
             "multidict", "propcache", "yarl",
             # uvicorn[standard]'s loop and HTTP parser: a unit's lock installs them, so the
             # service measured here must run on them too (uvicorn picks them when present)
             "uvloop", "httptools"]:
    print(f"{name}=={version(name)}")
PY
)
rm -rf .gpu/whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .gpu/whl "${wheels[@]}"
du -sh .gpu
