"""The Wyoming protocol server (Home Assistant's voice pipeline): `asr`, `tts` and `handle`
over the service's own engines, gates, limits and metrics, in the service's process
(docs/wyoming.md)."""
