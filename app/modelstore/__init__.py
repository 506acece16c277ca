"""Model supply: catalog, sources, verification and the content-addressed store.

Stdlib only at import time (plus app.gguf), so the same code runs on units as a zipapp
shipped by the `models` role; PyYAML and huggingface_hub are imported where needed.
"""
