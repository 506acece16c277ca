"""Stand-in for ansible-test's pip bootstrap script (get-pip-<version>.py, which ansible-test
downloads from ci-files.testing.ansible.com into ~/.ansible/test/cache/ before it creates each
sanity test's venv). scripts/sanity.sh puts it there when that host is unreachable (offline, or
only a package index reachable): pip comes from the interpreter's own ensurepip, then that pip
installs what get-pip was asked for (pip==<version>) from the machine's configured indexes."""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap()
# ensurepip turns pip's configuration off in this process (PIP_CONFIG_FILE=/dev/null): back on,
# so the pip it installed reads the machine's indexes and CA bundle
os.environ.pop("PIP_CONFIG_FILE", None)
os.environ.pop("ENSUREPIP_OPTIONS", None)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args]))
