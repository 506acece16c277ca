"""Credentials never follow a redirect to another host: a real server on 127.0.0.1 (the "hub")
redirects to a second real server on 127.0.0.2 (the "CDN", another host to the client), which
must not see the Authorization header while the download still succeeds."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.modelstore.sources import FetchContext
from app.modelstore.sources.http import download
from app.modelstore.sources.hub import _probe

TOKEN = "hf_secret_token"
BODY = hashlib.sha256(b"weights").digest() * 4096  # 128 KiB


@dataclass
class Server:
    """Serves BODY at /file, redirects /to-cdn to the other server and /moved to /file here;
    records the Authorization header of every request."""

    host: str
    redirect_to: str = ""
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def start(self) -> ThreadingHTTPServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                server.seen.append((self.command, self.path, self.headers.get("Authorization")))
                location = {"/to-cdn": f"{server.redirect_to}/file", "/moved": "/file"}
                if self.path in location:
                    self.send_response(302)
                    self.send_header("Location", location[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                if not head:
                    self.wfile.write(BODY)

        httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self.url = f"http://{self.host}:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd


@pytest.fixture
def hub_and_cdn() -> Iterator[tuple[Server, Server]]:
    cdn = Server("127.0.0.2")
    cdn_httpd = cdn.start()
    hub = Server("127.0.0.1", redirect_to=cdn.url)
    hub_httpd = hub.start()
    yield hub, cdn
    for httpd in (hub_httpd, cdn_httpd):
        httpd.shutdown()
        httpd.server_close()


def test_download_redirected_to_another_host_drops_the_token(
    hub_and_cdn: tuple[Server, Server], tmp_path: Path
) -> None:
    hub, cdn = hub_and_cdn
    dest = tmp_path / "model.gguf"
    sha = download(f"{hub.url}/to-cdn", dest, 5, {"Authorization": f"Bearer {TOKEN}"})
    assert sha == hashlib.sha256(BODY).hexdigest() and dest.read_bytes() == BODY
    assert hub.seen == [("GET", "/to-cdn", f"Bearer {TOKEN}")]
    assert cdn.seen == [("GET", "/file", None)]


def test_redirect_on_the_same_host_keeps_the_token(
    hub_and_cdn: tuple[Server, Server], tmp_path: Path
) -> None:
    # A renamed repo on the hub itself redirects there: it still needs the token.
    hub, cdn = hub_and_cdn
    download(f"{hub.url}/moved", tmp_path / "f", 5, {"Authorization": f"Bearer {TOKEN}"})
    assert [auth for _, _, auth in hub.seen] == [f"Bearer {TOKEN}"] * 2
    assert not cdn.seen


def test_hub_probe_redirected_to_another_host_drops_the_token(
    hub_and_cdn: tuple[Server, Server], tmp_path: Path
) -> None:
    hub, cdn = hub_and_cdn
    _probe(f"{hub.url}/to-cdn", FetchContext(cache_dir=tmp_path, timeout=5, token=TOKEN))
    assert hub.seen == [("HEAD", "/to-cdn", f"Bearer {TOKEN}")]
    assert cdn.seen == [("HEAD", "/file", None)]
