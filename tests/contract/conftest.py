"""The adapter contract suite's backends: every case runs against each of them.

- `memory`: the in-process fakes (`adapters.memory`); always runs.
- `emulator`: the GCP adapters on the local emulator suite (`emulator_settings` from
  tests/conftest.py, wired through `adapters.bootstrap.bootstrap`); marked `integration`.
- `gcp`: the GCP adapters on a real project; marked `gcp` and skipped unless
  `GPUPIPE_GCP_TEST_PROJECT` names a project (application default credentials are used;
  `GPUPIPE_GCP_TEST_BUCKET` may name an existing bucket, else `<project>-gpupipe-contract`
  is created).

Resources are uuid-named per test and removed afterwards, so cases never see each other's
data. The terminal summary says how many cases passed (and were skipped) per backend.
"""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from adapters.bootstrap import bootstrap
from adapters.memory import MemoryBackends
from core.ports import (
    BlobStore,
    DocumentStore,
    MessagingAdmin,
    Publisher,
    Subscriber,
    SubscriptionSpec,
)
from core.settings import Settings

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("emulator", id="emulator", marks=pytest.mark.integration),
    pytest.param("gcp", id="gcp", marks=pytest.mark.gcp),
]


@dataclass
class ContractBackend:
    """One backend's adapters plus uuid-named scratch resources that are cleaned up after the test."""

    name: str
    blobs: BlobStore
    documents: DocumentStore
    publisher: Publisher
    subscriber: Subscriber
    admin: MessagingAdmin
    bucket: str
    fetch: Callable[[str], bytes]
    """GET a URL from `blobs.url()` the way a client would."""
    prefix: str = field(default_factory=lambda: f"contract-{uuid.uuid4().hex[:12]}")
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def unique(self, what: str) -> str:
        return f"{self.prefix}-{what}-{uuid.uuid4().hex[:6]}"

    def blob_name(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def collection(self) -> str:
        name = self.unique("docs")
        self._cleanups.append(lambda: _delete_collection(self.documents, name))
        return name

    def topic(self) -> str:
        name = self.unique("topic")
        self.admin.ensure_topic(name)
        self._cleanups.append(lambda: _delete_topic(self.admin, name))
        return name

    def subscription(self, topic: str, **spec: Any) -> str:
        name = self.unique("sub")
        self.admin.ensure_subscription(SubscriptionSpec(name=name, topic=topic, **spec))
        self._cleanups.append(lambda: self.admin.delete_subscription(name))
        return name

    def cleanup(self) -> None:
        for blob in self.blobs.list(self.bucket, self.prefix + "/"):
            self.blobs.delete(self.bucket, blob.name)
        for undo in reversed(self._cleanups):
            undo()


def _delete_collection(documents: DocumentStore, collection: str) -> None:
    for doc in list(documents.iterate(collection)):
        documents.delete(collection, doc.id)


def _delete_topic(admin: MessagingAdmin, topic: str) -> None:
    delete = getattr(admin, "delete_topic", None)  # not a port method; both adapters have it
    if delete is not None:
        delete(topic)


def _http_get(url: str) -> bytes:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.content


def _gcp_settings() -> tuple[Settings, str]:
    project = os.environ.get("GPUPIPE_GCP_TEST_PROJECT")
    if not project:
        pytest.skip("set GPUPIPE_GCP_TEST_PROJECT (and credentials) to run the contract suite on real GCP")
    settings = Settings.from_env(
        {"GPUPIPE_ENV": "staging", "GOOGLE_CLOUD_PROJECT": project, "GPUPIPE_API_KEY_PEPPER": "contract-tests"}
    )
    return settings, os.environ.get("GPUPIPE_GCP_TEST_BUCKET") or f"{project}-gpupipe-contract"


# Messaging runs once more on the emulator with the client library's StreamingPull (the workers'
# default is unary pull; `GPUPIPE_WORKER_PULL_MODE=streaming` selects this one).
MESSAGING_BACKENDS = [
    *BACKENDS,
    pytest.param("emulator-streaming", id="emulator-streaming", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[ContractBackend]:
    yield from make_backend(request, request.param)


def make_backend(request: pytest.FixtureRequest, kind: str) -> Iterator[ContractBackend]:
    if kind == "memory":
        fakes = MemoryBackends()
        contract = ContractBackend(
            kind,
            fakes.blobs,
            fakes.documents,
            fakes.pubsub,
            fakes.pubsub,
            fakes.pubsub,
            bucket=f"contract-{uuid.uuid4().hex[:12]}",
            fetch=fakes.blobs.read_url,
        )
    else:
        if kind.startswith("emulator"):
            settings: Settings = request.getfixturevalue("emulator_settings")
            if kind == "emulator-streaming":
                worker = settings.worker.model_copy(update={"pull_mode": "streaming"})
                settings = settings.model_copy(update={"worker": worker})
            bucket = f"contract-{uuid.uuid4().hex[:12]}"
        else:
            settings, bucket = _gcp_settings()
        wired = bootstrap(settings)
        contract = ContractBackend(
            kind,
            wired.blobs,
            wired.documents,
            wired.publisher,
            wired.subscriber,
            wired.messaging_admin,
            bucket=bucket,
            fetch=_http_get,
        )
    contract.blobs.ensure_bucket(contract.bucket)
    yield contract
    contract.cleanup()


# ----------------------------------------------------------------------------- per-backend counts
# One pytest session per process, so module state is the session's tally.
_BACKEND_OF: dict[str, str] = {}
_PASSED: collections.Counter[str] = collections.Counter()
_SKIPPED: collections.Counter[str] = collections.Counter()
_FAILED: collections.Counter[str] = collections.Counter()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "backend" in callspec.params and item.nodeid.startswith("tests/contract/"):
            _BACKEND_OF[item.nodeid] = callspec.params["backend"]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    backend = _BACKEND_OF.get(report.nodeid)
    if backend is None:
        return
    if report.when == "call" and report.passed:
        _PASSED[backend] += 1
    elif report.skipped:
        _SKIPPED[backend] += 1
    elif report.failed:
        _FAILED[backend] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    ran = set(_PASSED) | set(_SKIPPED) | set(_FAILED)
    if not ran:
        return
    parts = [
        f"{name}: {_PASSED[name]} passed, {_FAILED[name]} failed, {_SKIPPED[name]} skipped"
        for name in ("memory", "emulator", "emulator-streaming", "gcp")
        if name in ran
    ]
    terminalreporter.write_sep("-", "adapter contract cases per backend")
    terminalreporter.write_line("; ".join(parts))
