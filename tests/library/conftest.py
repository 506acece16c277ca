"""plugins/module_utils/ is imported by Ansible as
ansible_collections.voicefleet.fleet.plugins.module_utils.*; tests import it directly."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils"))
