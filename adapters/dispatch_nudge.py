"""Nudging the `dispatch` function after a submit (Cloud Run workers): an authenticated HTTP call
to it, off the request path. The API's and the upload trigger's `on_queued` hook in GCP."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import google.auth.exceptions
import requests

log = logging.getLogger("gpupipe.dispatch")


def google_id_token(audience: str) -> str:
    """An ID token for `audience` from the runtime's credentials (the metadata server on GCP)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return token


def nudge(
    url: str | None,
    *,
    queued: int = 1,
    timeout: float = 2.0,
    id_token: Callable[[str], str] = google_id_token,
    session: Any = None,
) -> bool:
    """Ask dispatch to look at the backlog now (the API calls this after a submit). Best effort:
    returns False (and logs) instead of raising, and never waits longer than `timeout`; the next
    scheduler tick catches up. No URL (local stack, GKE) means nothing to do."""
    if not url:
        return False
    try:
        token = id_token(url)
        response = (session or requests).post(
            url,
            json={"reason": "submit", "queued": queued},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except (requests.RequestException, OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        log.warning("could not nudge dispatch at %s: %s", url, exc)
        return False
    if response.status_code != 200:
        log.warning("dispatch answered the nudge with %s", response.status_code)
        return False
    return True


class BackgroundNudger:
    """Nudges dispatch off the request path: a submit never waits for it. Nudges that arrive
    while one is in flight are merged into the next one, so a burst of submits costs at most
    two calls."""

    def __init__(self, url: str, send: Callable[..., bool] = nudge) -> None:
        self._url = url
        self._send = send
        self._lock = threading.Lock()
        self._pending = 0
        self._running = False

    def __call__(self, queued: int) -> None:
        with self._lock:
            self._pending += queued
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._drain, name="dispatch-nudge", daemon=True).start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                queued, self._pending = self._pending, 0
                if queued == 0:
                    self._running = False
                    return
            try:
                self._send(self._url, queued=queued)
            except Exception:  # noqa: BLE001 - best effort: log it, and keep this nudger alive
                log.exception("nudging dispatch failed")

    def idle(self) -> bool:
        with self._lock:
            return not self._running
