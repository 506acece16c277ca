#!/bin/sh
# Install a unit's venv from the wheelhouse the controller built (scripts/build_wheelhouse.sh):
# first the hash-locked closure (requirements.txt, the lock: every wheel must match one of its
# sha256, nothing comes from an index), then the voicefleet wheel alone, then `pip check` that
# the closure satisfies it. pip runs from the wheelhouse's pip wheel (a unit needs nothing but
# its CPython), and that wheel's own hash is checked against the lock before it runs.
#
#   install_closure.sh WHEELHOUSE VENV_PYTHON APP_WHEEL_NAME
set -eu
wheelhouse=$1
python=$2
app=$3
# The unit's own pip configuration (an index, find-links; in files or PIP_* variables) plays no
# part.
for name in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$name"; done
PIP_CONFIG_FILE=/dev/null
export PIP_CONFIG_FILE
pip_wheel=$(ls "$wheelhouse"/pip-*.whl | head -n 1)
pip_sha=$(sha256sum "$pip_wheel" | cut -d ' ' -f 1)
if ! grep -q -- "--hash=sha256:$pip_sha" "$wheelhouse/requirements.txt"; then
  echo "install_closure: $pip_wheel (sha256 $pip_sha) is not the pip the lock lists; refusing to run it" >&2
  exit 1
fi
"$python" "$pip_wheel/pip" install --quiet --disable-pip-version-check --no-index \
  --require-hashes --find-links "$wheelhouse" -r "$wheelhouse/requirements.txt"
"$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
  "$wheelhouse/$app"
"$python" -m pip check --disable-pip-version-check
