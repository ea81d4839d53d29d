"""`functions.dispatch.nudge`, the API's best-effort call after a submit, against a real HTTP
server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from functions.dispatch import nudge


class Recorder(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"auth": self.headers["Authorization"], "body": json.loads(body)})
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.received, Recorder.status = [], 200
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_nudge_posts_the_hint_with_an_id_token_for_the_url(server: str) -> None:
    audiences: list[str] = []

    def token(audience: str) -> str:
        audiences.append(audience)
        return "id-token-for-test"

    assert nudge(server, queued=2, id_token=token) is True
    assert audiences == [server]
    assert Recorder.received == [{"auth": "Bearer id-token-for-test", "body": {"reason": "submit", "queued": 2}}]


def test_a_refused_nudge_is_reported_not_raised(server: str) -> None:
    Recorder.status = 503
    assert nudge(server, id_token=lambda _: "t") is False


def test_an_unreachable_dispatch_is_reported_not_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert nudge(f"http://127.0.0.1:{port}/", id_token=lambda _: "t", timeout=1.0) is False


def test_no_url_means_nothing_to_nudge() -> None:
    def must_not_be_called(_: str) -> str:
        raise AssertionError("no token without a URL")

    assert nudge(None, id_token=must_not_be_called) is False
