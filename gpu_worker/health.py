"""`/healthz` and `/metrics` on a small HTTP server of the worker's own.

`/healthz` answers 200 `{"status": "ok", ...}` once the model is loaded and the worker pulls,
503 before that and while it drains; `/metrics` is Prometheus' text format.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpu_worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, host: str, port: int, metrics: WorkerMetrics, status: Callable[[], dict[str, Any]]) -> None:
        self._metrics = metrics
        self._status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                outer._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("health request: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="worker-health", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            status = self._status()
            body = json.dumps(status).encode()
            code = 200 if status.get("status") == "ok" else 503
            content_type = "application/json"
        elif path == "/metrics":
            body = generate_latest(self._metrics.registry)
            code = 200
            content_type = CONTENT_TYPE_LATEST
        else:
            body = json.dumps({"error": {"code": "not_found", "message": f"no such path {path}"}}).encode()
            code = 404
            content_type = "application/json"
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
