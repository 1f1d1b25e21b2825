"""A loopback stand-in for the model hub: its file list (``/api/models/{repo}?blobs=true``) and file routes
(``/{repo}/resolve/main/{path}``, with Range), serving local folders; it can drop a connection mid-file."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

PORTS = range(56100, 56200)  # the ports these tests may use


@dataclass
class Served:
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class StandIn:
    repos: dict[str, Path]  # repo id -> folder
    drops: dict[str, int] = field(default_factory=dict)  # repo path -> bytes sent before the connection drops (once)
    served: list[Served] = field(default_factory=list)
    url: str = ""

    def files(self, repo: str) -> list[tuple[str, int]]:
        root = self.repos[repo]
        return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())

    def sent_for(self, path: str) -> int:
        return sum(s.sent for s in self.served if s.path == path)


def _handler(hub: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            url = urlsplit(self.path)
            path = unquote(url.path)
            if path.startswith("/api/models/"):
                repo = path[len("/api/models/"):]
                if repo not in hub.repos:
                    return self._send(404, b'{"error": "Repository not found"}')
                siblings = [{"rfilename": name, "size": size} for name, size in hub.files(repo)]
                return self._send(200, json.dumps({"id": repo, "siblings": siblings}).encode())
            repo, sep, name = path[1:].partition("/resolve/main/")
            if not sep or repo not in hub.repos or not (hub.repos[repo] / name).is_file():
                return self._send(404, b"Entry not found")
            data = (hub.repos[repo] / name).read_bytes()
            start, status = 0, 200
            wanted = self.headers.get("Range")
            if wanted:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    hub.served.append(Served(name, wanted, 416, 0))
                    return self._send(416, b"")
                status = 206
            body = data[start:]
            cut = hub.drops.pop(name, None)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if cut is not None:  # part of the body, then the connection goes
                self.wfile.write(body[:cut])
                self.wfile.flush()
                hub.served.append(Served(name, wanted, status, cut))
                self.close_connection = True
                return
            self.wfile.write(body)
            hub.served.append(Served(name, wanted, status, len(body)))

        def _send(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class HubServer:
    """``with HubServer({"test/tiny-sd": folder}) as hub:`` — ``hub.url`` is its base URL."""

    def __init__(self, repos: dict[str, Path]):
        self.hub = StandIn(repos=dict(repos))

    def __enter__(self) -> StandIn:
        for port in PORTS:
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.hub))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 56100-56199")
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.hub.url = f"http://127.0.0.1:{self.server.server_port}"
        return self.hub

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
