"""Mapping HTTP error responses onto the SDK's exceptions, for bodies the real API never sends
(a proxy's page, an HTTP-date Retry-After), and the CLI's exit codes for each."""

from __future__ import annotations

import datetime as dt

import pytest

from client.errors import (
    ApiError,
    Conflict,
    GpupipeError,
    InvalidArgument,
    NetworkError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
    error_from_response,
    parse_retry_after,
)
from client.exit_codes import describe, exit_code_for


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)

    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:45 GMT", now=now) == 45.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_the_error_code_picks_the_class_and_keeps_every_field() -> None:
    body = {
        "error": {
            "code": "invalid_argument",
            "message": "invalid job request: width",
            "details": [{"field": "width", "message": "must be a multiple of 8, got 65"}],
        }
    }

    error = error_from_response(400, body, None)

    assert type(error) is InvalidArgument
    assert (error.code, error.status, error.message) == ("invalid_argument", 400, "invalid job request: width")
    assert [(d.field, d.message) for d in error.details] == [("width", "must be a multiple of 8, got 65")]
    assert str(error) == "invalid job request: width (width: must be a multiple of 8, got 65)"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, Unauthenticated),
        (404, NotFound),
        (409, Conflict),
        (429, RateLimited),
        (502, Unavailable),
        (503, Unavailable),
        (500, ServerError),
        (418, ApiError),
    ],
)
def test_a_body_that_is_not_the_contracts_falls_back_on_the_status(status: int, cls: type[ApiError]) -> None:
    error = error_from_response(status, None, "12")

    assert type(error) is cls
    assert error.status == status
    assert error.retry_after == 12.0
    assert f"HTTP {status}" in error.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument("bad"), 2),
        (NotFound("gone"), 3),
        (Unauthenticated("who"), 4),
        (RateLimited("slow", retry_after=3), 5),
        (Unavailable("down"), 6),
        (ServerError("boom", status=500), 6),
        (NetworkError("unreachable"), 6),
        (WaitTimeout("late"), 7),
        (Conflict("again"), 8),
    ],
)
def test_cli_exit_codes(error: GpupipeError, code: int) -> None:
    assert exit_code_for(error) == code


def test_the_cli_error_line_names_fields_and_when_to_retry() -> None:
    assert describe(RateLimited("daily image quota reached", retry_after=3600)) == (
        "daily image quota reached; retry in 3600s"
    )
