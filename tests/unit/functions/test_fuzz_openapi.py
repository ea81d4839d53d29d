"""Fuzz the `api` function from its own OpenAPI document with schemathesis (through WSGI, over
memory fakes): no 5xx, and every response must match the document (status code, content
type, headers, body schema). Bounded examples per operation keep it well under a minute."""

from __future__ import annotations

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

from functions import wiring
from tests.unit.functions.conftest import Caller, make_app, new_caller

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_caller(services: wiring.Services) -> Caller:
    return new_caller(services, "fuzzer", max_concurrent_jobs=10_000, requests_per_minute=100_000)


@pytest.fixture
def api_schema(services: wiring.Services) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", make_app("api"))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any, fuzz_caller: Caller) -> None:
    case.call_and_validate(headers=fuzz_caller.headers, checks=CHECKS)
