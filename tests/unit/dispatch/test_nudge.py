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

from adapters.dispatch_nudge import nudge


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


def test_background_nudger_merges_a_burst_and_never_blocks_the_caller() -> None:
    from adapters.dispatch_nudge import BackgroundNudger

    release = threading.Event()
    calls: list[int] = []

    def slow_send(url: str, *, queued: int) -> bool:
        calls.append(queued)
        release.wait(timeout=5)
        return True

    nudger = BackgroundNudger("http://dispatch.invalid/", send=slow_send)
    for _ in range(5):
        nudger(1)  # returns at once although the first send is still blocked
    release.set()
    deadline = threading.Event()
    for _ in range(100):
        if nudger.idle():
            break
        deadline.wait(0.02)
    assert nudger.idle()
    assert sum(calls) == 5 and len(calls) <= 2


def test_a_submit_tells_the_dispatcher_once_and_a_replay_not_at_all() -> None:
    from adapters.memory import MemoryBackends
    from core.accounts import Accounts
    from core.settings import Settings
    from core.submission import JobService
    from emulators.topology import apply, load

    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    backends = MemoryBackends()
    apply(load(), settings.names, backends.blobs, backends.pubsub)
    told: list[int] = []
    accounts = Accounts(backends.documents, settings)
    user = accounts.create_user("carol", user_id="carol")
    jobs = JobService(backends.documents, backends.pubsub, settings, blobs=backends.blobs, on_queued=told.append)
    jobs.submit(user, {"prompt": "a lighthouse"}, idempotency_key="k1")
    jobs.submit(user, {"prompt": "a lighthouse"}, idempotency_key="k1")  # a replay queues nothing
    assert told == [1]


def test_a_failing_send_does_not_stop_later_nudges() -> None:
    from adapters.dispatch_nudge import BackgroundNudger

    calls: list[int] = []

    def flaky_send(url: str, *, queued: int) -> bool:
        calls.append(queued)
        if len(calls) == 1:
            raise RuntimeError("credentials exploded")
        return True

    nudger = BackgroundNudger("http://dispatch.invalid/", send=flaky_send)
    waiter = threading.Event()
    nudger(1)
    for _ in range(100):
        if nudger.idle():
            break
        waiter.wait(0.02)
    nudger(2)
    for _ in range(100):
        if nudger.idle() and len(calls) == 2:
            break
        waiter.wait(0.02)
    assert calls == [1, 2]
