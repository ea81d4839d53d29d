"""Ports and probes: everything local listens on 127.0.0.1 only, on given ports or free ones.

`choose_ports` is the one port picker of the suite and the stack: a given port must be free,
else last run's port is reused when free (so a shell that sourced local.env keeps working),
else any free one.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.settings import Settings
from emulators.errors import PortInUse, SuiteError

HOST = "127.0.0.1"
_FREE_PORT_TRIES = 20


@dataclass(frozen=True)
class Ports:
    """The emulator suite's ports."""

    pubsub: int
    firestore: int
    storage_http: int
    storage_https: int


def emulator_ports(settings: Settings) -> Ports:
    """Ports from settings where given (`PUBSUB_EMULATOR_HOST`, ...), free ones otherwise.
    A given port that is taken raises `PortInUse`."""
    addresses = {
        "pubsub": ("PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host),
        "firestore": ("FIRESTORE_EMULATOR_HOST", settings.firestore_emulator_host),
        "storage_http": ("STORAGE_EMULATOR_HOST", settings.storage_emulator_host),
    }
    wanted = {name: (port_of(address, variable), variable) for name, (variable, address) in addresses.items()}
    wanted["storage_https"] = (settings.emulators.storage_https_port, "GPUPIPE_STORAGE_EMULATOR_HTTPS_PORT")
    given = {name: (port, variable) for name, (port, variable) in wanted.items() if port is not None}
    chosen = choose_ports(wanted, given=given)
    return Ports(**chosen)


def choose_ports(
    names: Iterable[str],
    *,
    given: Mapping[str, tuple[int, str]] | None = None,
    saved: Mapping[str, Any] | None = None,
    avoid: Collection[int] = (),
) -> dict[str, int]:
    """A port per name: the `given` one (port, and the setting that gave it, for the message),
    which must be free; else the `saved` one when free; else a free one. Every chosen port
    stays bound until all are chosen, so no two names get one port; `avoid` holds ports
    already handed to processes that may not listen yet."""
    given = dict(given or {})
    saved = saved or {}
    chosen: dict[str, int] = {}
    with contextlib.ExitStack() as held:
        for name, (port, source) in given.items():
            if port in chosen.values():
                raise PortInUse(f"port {port} ({source}) is given for two emulators")
            held.enter_context(_bind(port, f"port {port} on {HOST} ({source}) is already in use"))
            chosen[name] = port
        for name in names:
            if name in chosen:
                continue
            last = saved.get(name)
            if isinstance(last, int) and last not in avoid and last not in chosen.values() and _try_bind(held, last):
                chosen[name] = last
            else:
                chosen[name] = _bind_free(held, avoid)
    return chosen


def is_free(port: int) -> bool:
    with contextlib.ExitStack() as held:
        return _try_bind(held, port)


def port_of(address: str | None, variable: str) -> int | None:
    """The port of `host:port` or `http://host:port` (given in `variable`), which must be local."""
    if not address:
        return None
    parsed = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    if parsed.hostname not in (HOST, "localhost") or parsed.port is None:
        raise SuiteError(f"{variable}={address}: the local stack listens on {HOST}:<port> only")
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


def _try_bind(held: contextlib.ExitStack, port: int) -> bool:
    try:
        held.enter_context(_bind(port, ""))
    except PortInUse:
        return False
    return True


def _bind_free(held: contextlib.ExitStack, avoid: Collection[int]) -> int:
    for _ in range(_FREE_PORT_TRIES):
        port = int(held.enter_context(_bind(0, "no free port")).getsockname()[1])
        if port not in avoid:
            return port
    raise PortInUse(f"no free port on {HOST}")


# --------------------------------------------------------------------------- probes
def http_ok(url: str, *, timeout: float = 1.0, client_errors_ok: bool = False) -> bool:
    """`url` answers 2xx (or, with `client_errors_ok`, any status below 500)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(200 <= response.status < 300)
    except urllib.error.HTTPError as exc:
        exc.close()
        return client_errors_ok and exc.code < 500
    except OSError:
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
