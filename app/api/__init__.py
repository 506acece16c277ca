"""HTTP API surfaces, one router per file."""
