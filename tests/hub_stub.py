"""A scriptable stand-in for the gpubench hub, for the client's tests.

``StubHub`` serves on 127.0.0.1 in a thread. Each test scripts it: ``answers`` is a
list of (status, JSON body or bytes, extra headers) given to the POSTs in turn (the
last one repeats), ``documents`` maps run IDs to what ``GET /api/v1/runs/{id}``
returns, ``delay_s`` makes every answer late. Every request is kept in
``requests`` (method, path, headers, body bytes) for the test to check.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubHub:
    def __init__(self):
        self.answers: list[tuple] = [(201, {"id": "r1", "url": "http://hub/runs/r1", "created": True})]
        self.documents: dict[str, dict] = {}
        self.delay_s = 0.0
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):     # quiet
                pass

            def _reply(self, status, body, headers=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with hub._lock:
                    hub.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers), "body": body})
                if hub.delay_s:
                    time.sleep(hub.delay_s)

            def do_POST(self):
                self._record()
                with hub._lock:
                    answer = hub.answers.pop(0) if len(hub.answers) > 1 else hub.answers[0]
                status, body, *rest = answer
                try:
                    self._reply(status, body, rest[0] if rest else None)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._record()
                prefix = "/api/v1/runs/"
                run_id = self.path[len(prefix):] if self.path.startswith(prefix) else None
                if run_id in hub.documents:
                    self._reply(200, {"id": run_id, "document": hub.documents[run_id]})
                else:
                    self._reply(404, {"detail": "run not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]


def closed_port_url() -> str:
    """An address where nothing listens: connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
