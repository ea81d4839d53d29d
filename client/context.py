"""`Context`: what a `gpupipe` command handler gets, and `UsageError`, the one it may raise
for a bad command line or configuration (exit code 2)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from client import render
from client.sdk import Client

if TYPE_CHECKING:
    from core.ports import BlobStore


class UsageError(Exception):
    """A problem with the command line or the local configuration (exit code 2)."""


@dataclass
class Context:
    """What a command needs: its arguments, the environment `main` was given, and where to
    write. Transports, blobs and clocks replace the real ones in tests."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO
    transport: httpx.BaseTransport | None = None
    storage_transport: httpx.BaseTransport | None = None
    blobs: BlobStore | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _client: Client | None = field(default=None, init=False)

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def client(self) -> Client:
        """The API client, built on first use from --api-url/--api-key or the environment."""
        if self._client is None:
            url = getattr(self.args, "api_url", None) or self.environ.get("GPUPIPE_API_URL")
            key = getattr(self.args, "api_key", None) or self.environ.get("GPUPIPE_API_KEY")
            if not url:
                raise UsageError(
                    "no API URL: set GPUPIPE_API_URL or pass --api-url (after `make up`: source .gpupipe/local.env)"
                )
            if not key:
                raise UsageError("no API key: set GPUPIPE_API_KEY or pass --api-key")
            self._client = Client(
                url,
                key,
                transport=self.transport,
                storage_transport=self.storage_transport,
                sleep=self.sleep,
                clock=self.clock,
            )
        return self._client

    def emit(self, data: Any, text: str) -> None:
        """Write `data` as JSON with --json, else the human-readable `text`."""
        if self.as_json:
            self.stdout.write(json.dumps(data, indent=2) + "\n")
        elif text:
            self.stdout.write(text + "\n")

    def progress(self) -> render.ProgressDisplay:
        return render.ProgressDisplay(self.stderr, tty=_isatty(self.stderr), clock=self.clock)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
