"""voicefleet: the voice service that runs on every unit, and the `voicefleet` CLI."""

__version__ = "0.1.0"
