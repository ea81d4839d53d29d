"""Webhook delivery over HTTPS with `requests`: bounded per attempt and in attempts."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import requests

from core.ports import BackendUnavailable, WebhookSender


class HttpWebhookSender(WebhookSender):
    def __init__(self, *, timeout: float = 5.0, attempts: int = 3, backoff_seconds: float = 1.0) -> None:
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._session = requests.Session()

    def deliver(self, url: str, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"))
        headers = {"Content-Type": "application/json", "User-Agent": "gpupipe-webhook/1"}
        problem = "no attempt"
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))  # between attempts to another host: a plain backoff
            try:
                response = self._session.post(url, data=body, headers=headers, timeout=self._timeout)
            except requests.RequestException as exc:
                problem = str(exc)
                continue
            if 200 <= response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refuses this payload: retrying will not change its mind
        raise BackendUnavailable(f"webhook {url} not delivered after {attempt + 1} attempt(s): {problem}")
