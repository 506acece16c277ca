# The README's two commands are `make demo` (main job) and `make test` (all tests + lint).
# Both run `make setup` first, which installs everything and is fast when already done.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export VOICEFLEET_HOME ?= $(HOME)/.cache/voicefleet

.PHONY: setup demo test lint lock sanity pytest collection molecule molecule-fleet sim-down bench clean

setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

test: setup lint sanity pytest molecule

# Code that runs with a unit's own python3, not the service's venv: the models tool (a zipapp
# of app/modelstore + app/gguf.py), the telemetry exporter and the collection's Ansible modules
# and module_utils, the offline bundle tool (voicefleet-bundle). JetPack 6's python3 is 3.10,
# so they must stay 3.10-compatible (the service itself needs 3.11).
UNIT_PY310 := app/__init__.py app/gguf.py app/modelstore roles/jetson_telemetry/files plugins \
  roles/offline/files

# The hash-locked closure a unit installs, one lock per unit target (locks/; scripts/lock.py):
# regenerate after changing a pin in pyproject.toml, then commit locks/. Needs PyPI.
lock:
	python scripts/lock.py compile

lint:
	python scripts/lock.py check
	ruff check app tests bench scripts plugins roles/offline/files
	ruff format --check app tests bench scripts plugins roles/offline/files
	mypy
	vermin -q --no-tips --eval-annotations --target=3.10- --violations $(UNIT_PY310)
	yamllint -s .
	ansible-lint --offline

# ansible-test sanity on the collection's Ansible content (plugins, roles, playbooks, meta), on
# this machine's Python, offline once its venvs are cached (scripts/sanity.sh; --all: every file).
sanity:
	scripts/sanity.sh

pytest:
	pytest -p no:cacheprovider -ra tests

# The collection voicefleet.fleet: built from this checkout (galaxy.yml) and installed into an
# empty collections path, .cache/collections (not build/: the wheel build clears that); the
# fleet scenario runs voicefleet.fleet.site from that installed copy
# (VOICEFLEET_COLLECTIONS_PATH), not from the checkout.
COLLECTIONS_DIR := $(CURDIR)/.cache/collections

collection:
	rm -rf .cache/collection $(COLLECTIONS_DIR)
	ansible-galaxy collection build --output-path .cache/collection .
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) \
	  ansible-galaxy collection install -p $(COLLECTIONS_DIR) .cache/collection/voicefleet-fleet-*.tar.gz

# Every scenario: one per role (`stack`: voice_service, release and bench on one unit, one
# bring-up), `fleet` (site.yml end to end on 3 units + the fault tests in tests/fleet/) and
# `offline` (a signed bundle a unit applies itself, tests/offline/).
# `make molecule-fleet` runs only `fleet`.
MOLECULE_SCENARIOS := default fleet jetson_power llamacpp models offline stack

molecule: collection
	VOICEFLEET_COLLECTIONS_PATH=$(COLLECTIONS_DIR) scripts/molecule_all.sh $(MOLECULE_SCENARIOS)

molecule-fleet: collection
	VOICEFLEET_COLLECTIONS_PATH=$(COLLECTIONS_DIR) scripts/molecule_all.sh fleet

sim-down:
	scripts/sim_fleet.sh down

clean: sim-down
	rm -rf .venv build dist
