# Copyright: voicefleet
# Apache-2.0 (see README.md)
"""Lookup: the absolute path of a file that ships in this collection."""

from __future__ import annotations

DOCUMENTATION = r"""
name: collection_file
short_description: Path of a file shipped in the voicefleet.fleet collection
description:
  - Returns the absolute path of each term, a path relative to the root of the installed
    voicefleet.fleet collection (where galaxy.yml is), for what the roles run on the
    controller (C(scripts/build_llama_server.sh), C(app/) for the models tool and the fleet
    report, C(pyproject.toml) for the service wheel).
  - The path is found from this plugin's own location, so it is the same collection that
    runs the play, an installed copy or a checkout resolved through its collections path,
    never a guessed git checkout.
  - Fails when the file is not in the collection.
options:
  _terms:
    description: Paths relative to the collection root; C(.) is the root itself.
    required: true
    type: list
    elements: str
author: voicefleet (@voicefleet)
"""

EXAMPLES = r"""
- name: Run the llama.cpp build script that ships in the collection
  ansible.builtin.command:
    argv:
      - "{{ lookup('voicefleet.fleet.collection_file', 'scripts/build_llama_server.sh') }}"
      - --help
"""

RETURN = r"""
_raw:
  description: Absolute paths, one per term.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

# plugins/lookup/collection_file.py -> the collection root (galaxy.yml or MANIFEST.json).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        paths = []
        for term in terms:
            path = os.path.normpath(os.path.join(ROOT, term))
            if path != ROOT and not path.startswith(ROOT + os.sep):
                raise AnsibleLookupError(f"collection_file: {term!r} is outside the collection")
            if not os.path.exists(path):
                raise AnsibleLookupError(
                    f"collection_file: {term!r} is not in the collection at {ROOT}"
                )
            paths.append(path)
        return paths
