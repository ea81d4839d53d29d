"""Fuzz the `api` function from its own OpenAPI document with schemathesis, in process (through
WSGI, over memory fakes), a few hundred generated cases per operation.

Every response must be no 5xx and must match the document: status code, content type, headers
and body schema. A job the API accepts must also be one Firestore can store: the memory fake
keeps any dict, so the test checks the stored document against Firestore's field-name rules
itself (an empty key or a `__reserved__` one in `metadata` was a 500 against Firestore).
Operations on ids are also called with ids that exist, so their 200 and 409 bodies are
checked too, not only their 404s.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.memory import MemoryBackends
from core import collection_names as c
from core.batches import Batch, BatchStatus
from core.timeutil import utcnow
from functions import wiring
from tests.unit.functions.conftest import Caller, make_app, new_caller

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Operations with few inputs (no parameters at all, for some) stop early once hypothesis has
# seen every distinct case; the job operations use the whole budget (about a minute in all).
MAX_EXAMPLES = 300
SEED_JOB = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "metadata": {"order": 1}}

# Firestore's rules for what a document may hold (checked against the emulator: an empty field
# name is refused by the client library, `__x__` names and field paths over 1500 bytes by the
# server, and strings that are not UTF-8 cannot be sent at all).
_RESERVED = re.compile(r"__.*__", re.DOTALL)
_MAX_FIELD_PATH_BYTES = 1500
_MAX_DEPTH = 20
_CASES = itertools.count()


def firestore_problems(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    if isinstance(value, dict):
        if len(path) >= _MAX_DEPTH:
            yield f"{'.'.join(path)}: nested deeper than {_MAX_DEPTH}"
        for key, item in value.items():
            here = (*path, key)
            if not key:
                yield f"{'.'.join(path)}: an empty field name"
            elif _RESERVED.fullmatch(key):
                yield f"{'.'.join(here)}: a reserved field name"
            elif len(".".join(here).encode("utf-8", "surrogatepass")) > _MAX_FIELD_PATH_BYTES:
                yield f"{'.'.join(here)[:60]}...: a field path over {_MAX_FIELD_PATH_BYTES} bytes"
            yield from firestore_problems(key, here)
            yield from firestore_problems(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from firestore_problems(item, (*path, str(index)))
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            yield f"{'.'.join(path)}: a string that is not UTF-8"


@pytest.fixture
def fuzz_caller(services: wiring.Services) -> Caller:
    return new_caller(
        services, "fuzzer", max_concurrent_jobs=1_000_000, daily_images=1_000_000, requests_per_minute=1_000_000
    )


@pytest.fixture
def known_ids(services: wiring.Services, memory_backends: MemoryBackends, fuzz_caller: Caller) -> dict[str, str]:
    """A job, and a batch, of the fuzzing user's, so id operations can also hit something real."""
    client = make_app("api").test_client()
    response = client.post("/v1/jobs", json=SEED_JOB, headers=fuzz_caller.headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    client.post("/v1/jobs", json={**SEED_JOB, "seed": 7}, headers=fuzz_caller.headers)  # listJobs sees two
    now = utcnow()
    batch = Batch("batch_fuzz", "fuzzer", "gs://in/fuzzer/a.jsonl", BatchStatus.RUNNING, now, now, jobs_total=1)
    memory_backends.documents.create(c.BATCHES, batch.id, batch.to_document())
    return {"getJob": response.get_json()["id"], "cancelJob": response.get_json()["id"], "getBatch": batch.id}


@pytest.fixture
def api_schema(services: wiring.Services) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", make_app("api"))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# schemathesis' own strategies call the `random` module (hypothesis 6 warns about that inside
# strategies); it is the library's, not a defect of the API under test.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)
# The fixtures hold the app and its fakes for every example of an operation on purpose (state
# accumulates as it would in a running API); schemathesis' generated bodies can be large and
# slow to build, which is not a failure of the API.
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(
    case: Any, fuzz_caller: Caller, known_ids: dict[str, str], memory_backends: MemoryBackends
) -> None:
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 0 < len(key) <= 200:
        # The fuzzer repeats short keys ("0") with other bodies: a 409 by design, which would keep
        # most bodies from ever reaching validation. A key of its own per case avoids that.
        case.headers["Idempotency-Key"] = f"{key}-{next(_CASES)}"
    response = case.call_and_validate(headers=fuzz_caller.headers, checks=CHECKS)
    if case.operation.definition.raw.get("operationId") == "submitJob" and response.status_code == 202:
        stored = memory_backends.documents.get(c.JOBS, response.json()["id"])
        assert stored is not None
        assert list(firestore_problems(stored)) == [], f"accepted a job Firestore cannot store: {case.body!r}"
    known = known_ids.get(case.operation.definition.raw.get("operationId", ""))
    if known is not None:
        case.path_parameters = {**(case.path_parameters or {}), "id": known}
        case.call_and_validate(headers=fuzz_caller.headers, checks=CHECKS)
