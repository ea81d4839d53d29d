"""Ports and probes: the suite listens on 127.0.0.1 only, on ports from settings or free ones."""

from __future__ import annotations

import contextlib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from core.settings import Settings
from emulators.errors import PortInUse, SuiteError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    pubsub: int
    firestore: int
    storage_http: int
    storage_https: int


def choose_ports(settings: Settings) -> Ports:
    """Ports from settings where given (`PUBSUB_EMULATOR_HOST`, ...), free ones otherwise.
    A given port that is taken raises `PortInUse`."""
    wanted: dict[str, tuple[int | None, str]] = {
        "pubsub": (_port_of(settings.pubsub_emulator_host, "PUBSUB_EMULATOR_HOST"), "PUBSUB_EMULATOR_HOST"),
        "firestore": (
            _port_of(settings.firestore_emulator_host, "FIRESTORE_EMULATOR_HOST"),
            "FIRESTORE_EMULATOR_HOST",
        ),
        "storage_http": (
            _port_of(settings.storage_emulator_host, "STORAGE_EMULATOR_HOST"),
            "STORAGE_EMULATOR_HOST",
        ),
        "storage_https": (settings.emulators.storage_https_port, "GPUPIPE_STORAGE_EMULATOR_HTTPS_PORT"),
    }
    chosen: dict[str, int] = {}
    with contextlib.ExitStack() as held:
        for name, (port, source) in wanted.items():
            if port is None:
                continue
            if port in chosen.values():
                raise PortInUse(f"port {port} ({source}) is given for two emulators")
            held.enter_context(_bind(port, f"port {port} on {HOST} ({source}) is already in use"))
            chosen[name] = port
        # Keep every socket bound until all are chosen, so no two emulators get the same port.
        for name in wanted:
            if name not in chosen:
                sock = held.enter_context(_bind(0, "no free port"))
                chosen[name] = sock.getsockname()[1]
    return Ports(**chosen)


def _port_of(host: str | None, variable: str) -> int | None:
    if not host:
        return None
    parsed = urllib.parse.urlsplit(host if "://" in host else f"http://{host}")
    if parsed.hostname not in (HOST, "localhost") or parsed.port is None:
        raise SuiteError(f"{variable}={host}: the local suite listens on {HOST}:<port> only")
    return parsed.port


@contextlib.contextmanager
def _bind(port: int, message: str) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            raise PortInUse(message) from None
        yield sock
    finally:
        sock.close()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.URLError):
        return False


def https_ok(port: int) -> bool:
    """fake-gcs-server's HTTPS side answers a TLS handshake (its certificate is self-signed)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((HOST, port), timeout=1) as raw, context.wrap_socket(raw):
            return True
    except OSError:
        return False
