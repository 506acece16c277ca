"""A real HTTP server on 127.0.0.1 that speaks the hub endpoints huggingface_hub 2.4 uses
(read from its source: file_download.get_hf_file_metadata / http_get, HfApi.model_info,
HfApi.get_paths_info) plus a plain mirror under /mirror/. Faults are switched per test.

- GET  /api/models/<repo>/revision/<rev>          -> {"id", "sha", "siblings"}
- POST /api/models/<repo>/paths-info/<rev>        -> [{"type","path","size","oid","lfs"}]
- HEAD/GET /<repo>/resolve/<rev>/<path>           -> X-Repo-Commit, ETag / X-Linked-Etag,
                                                     X-Linked-Size, Content-Length, Range
- HEAD/GET /mirror/<path>                         -> plain file server with Range
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

HTML_ERROR = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>upstream timed out</p></body></html>\n"
)


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]
    lfs_min: int = 1024  # files at least this big are "LFS" (sha256 in metadata)


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    mirror: dict[str, bytes] = field(default_factory=dict)
    # fault for file bodies: ok | truncate | corrupt | html | status:<code> | hang | cut_once
    fault: str = "ok"
    fail_first: int = 0  # this many body GETs answer 503 before the fault applies
    hang_s: float = 5.0
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _cut_done: bool = False

    def add_repo(self, name: str, files: dict[str, bytes], commit: str | None = None) -> Repo:
        commit = commit or hashlib.sha1(name.encode() + b"".join(files.values())).hexdigest()
        repo = Repo(commit, files)
        self.repos[name] = repo
        return repo

    def body_gets(self) -> list[tuple[str, str, str | None]]:
        return [e for e in self.log if e[0] == "GET" and "/api/" not in e[1]]

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.log.append(("HEAD", self.path, self.headers.get("Range")))
                self._file(head=True)

            def do_GET(self) -> None:
                hub.log.append(("GET", self.path, self.headers.get("Range")))
                if self.path.startswith("/api/models/"):
                    self._api_get()
                else:
                    self._file(head=False)

            def do_POST(self) -> None:
                hub.log.append(("POST", self.path, None))
                n = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(n).decode())
                parts = urlparse(self.path).path.split("/")
                # /api/models/<owner>/<name>/paths-info/<rev>
                repo_name, rev = "/".join(parts[3:5]), unquote(parts[6])
                repo = self._repo(repo_name, rev)
                if repo is None:
                    return
                out = []
                for p in form.get("paths", []):
                    if p in repo.files:
                        data = repo.files[p]
                        item: dict[str, object] = {
                            "type": "file",
                            "path": p,
                            "size": len(data),
                            "oid": _git_oid(data),
                        }
                        if len(data) >= repo.lfs_min:
                            item["lfs"] = {
                                "oid": hashlib.sha256(data).hexdigest(),
                                "size": len(data),
                                "pointerSize": 134,
                            }
                        out.append(item)
                self._json(200, out)

            def _api_get(self) -> None:
                parts = urlparse(self.path).path.split("/")
                # /api/models/<owner>/<name>/revision/<rev>
                repo_name, rev = "/".join(parts[3:5]), unquote(parts[6])
                repo = self._repo(repo_name, rev)
                if repo is not None:
                    siblings = [{"rfilename": p} for p in sorted(repo.files)]
                    self._json(200, {"id": repo_name, "sha": repo.commit, "siblings": siblings})

            def _repo(self, name: str, rev: str) -> Repo | None:
                repo = hub.repos.get(name)
                if repo is None:
                    self._json(404, {"error": "Repository not found"}, "RepoNotFound")
                    return None
                if rev not in ("main", repo.commit):
                    self._json(404, {"error": f"Invalid rev id: {rev}"}, "RevisionNotFound")
                    return None
                return repo

            def _json(self, code: int, obj: object, error_code: str | None = None) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.end_headers()
                self.wfile.write(body)

            def _file(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                headers: dict[str, str] = {}
                if path.startswith("/mirror/"):
                    data = hub.mirror.get(path.removeprefix("/mirror/"))
                    if data is None:
                        self._json(404, {"error": "not found"})
                        return
                else:
                    try:
                        before, after = path.lstrip("/").split("/resolve/", 1)
                        rev, fpath = after.split("/", 1)
                    except ValueError:
                        self._json(404, {"error": "bad path"})
                        return
                    repo = self._repo(before, rev)
                    if repo is None:
                        return
                    if fpath not in repo.files:
                        self._json(404, {"error": "Entry not found"}, "EntryNotFound")
                        return
                    data = repo.files[fpath]
                    headers["X-Repo-Commit"] = repo.commit
                    if len(data) >= repo.lfs_min:
                        sha = hashlib.sha256(data).hexdigest()
                        headers["X-Linked-Etag"] = f'"{sha}"'
                        headers["X-Linked-Size"] = str(len(data))
                        headers["ETag"] = f'"{_git_oid(data)}"'
                    else:
                        headers["ETag"] = f'"{_git_oid(data)}"'
                if not head:
                    if hub.fail_first > 0:
                        hub.fail_first -= 1
                        self._json(503, {"error": "busy"})
                        return
                    if hub.fault.startswith("status:"):
                        self._json(int(hub.fault.split(":")[1]), {"error": "fault"})
                        return
                    if hub.fault == "hang":
                        time.sleep(hub.hang_s)
                self._send_body(data, headers, head)

            def _send_body(self, data: bytes, headers: dict[str, str], head: bool) -> None:
                fault = hub.fault
                body = data
                if fault == "corrupt" and not head:
                    i = len(body) // 2
                    body = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
                if fault == "html" and not head:
                    body = HTML_ERROR
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and fault != "html":
                    start = int(rng[6:].split("-")[0] or 0)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                cut = fault == "truncate" or (fault == "cut_once" and not hub._cut_done)
                if cut and not head:
                    self.send_header("Connection", "close")
                self.end_headers()
                if head:
                    return
                payload = body[start:]
                if cut:
                    hub._cut_done = True
                    payload = payload[: len(payload) // 2]
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
