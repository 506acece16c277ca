"""Waiting for a server the benches or the tests started to answer."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once GET `url` answers 200; raise TimeoutError after `timeout` seconds, or
    RuntimeError at once if `proc` (the server's process, when known) exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")
