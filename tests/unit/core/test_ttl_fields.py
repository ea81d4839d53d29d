"""Documents that Firestore's TTL policy deletes (terraform/modules/stack: `ttl_fields`) must
carry `expires_at`, or they pile up forever."""

import datetime as dt

from adapters.memory import MemoryBackends
from core import collection_names as c
from core.accounts import Accounts
from core.settings import Settings
from core.submission import JobService
from emulators.topology import apply, load


def test_rate_windows_and_idempotency_claims_expire() -> None:
    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    backends = MemoryBackends()
    apply(load(), settings.names, backends.blobs, backends.pubsub)
    user = Accounts(backends.documents, settings).create_user("dora", user_id="dora")
    now = dt.datetime(2026, 11, 21, 12, 0, 30, tzinfo=dt.UTC)
    jobs = JobService(backends.documents, backends.pubsub, settings, blobs=backends.blobs, clock=lambda: now)
    submitted = jobs.submit(user, {"prompt": "a kite"}, idempotency_key="kite-1")
    jobs.submit(user, {"prompt": "a kite"})

    windows = list(backends.documents.iterate(c.RATE_WINDOWS))
    assert len(windows) == 1 and windows[0].data["count"] == 2
    assert windows[0].data["expires_at"] == now + dt.timedelta(hours=1)
    claim = backends.documents.get(c.IDEMPOTENCY, submitted.job.id)
    assert claim is not None and claim["expires_at"] > claim["claimed_at"]
