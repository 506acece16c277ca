"""`pin` writes the lock into the production catalog's own text (layout and comments kept)."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.modelstore.catalog import parse_catalog
from app.modelstore.pin import Lock, pin_text
from app.modelstore.sources.hub import PinnedFile

EXAMPLE = Path(__file__).resolve().parents[3] / "inventory/example/group_vars/all/models.yml"


def test_example_catalog_is_unpinned_then_pinned_by_text_edit() -> None:
    text = EXAMPLE.read_text()
    catalog = parse_catalog(yaml.safe_load(text))
    assert all(e.unpinned_reason() for e in catalog.entries)
    for i, e in enumerate(catalog.entries):
        files = {
            f.name: PinnedFile(f.path, 1000 + j, f"{i}{j}".ljust(64, "a"))
            for j, f in enumerate(e.files)
        }
        text = pin_text(text, Lock(e.name, f"{i}".ljust(40, "c"), files))
    pinned = parse_catalog(yaml.safe_load(text))
    assert not [e.name for e in pinned.entries if e.unpinned_reason()]
    tts = pinned.by_name("piper-en_US-lessac-medium")
    assert tts.files[0].path == "en/en_US/lessac/medium/en_US-lessac-medium.onnx"
    assert tts.files[1].size == 1001
    assert "voicefleet models pin --catalog" in text  # header comment kept
