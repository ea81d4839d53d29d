"""The OpenAPI 3.1 document of the HTTP API, generated from the validator's own request model
(`core.job_request.request_json_schema`) and the response models in `functions.http.schemas`."""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from core.job_request import request_json_schema
from core.settings import RequestLimits
from functions.http.schemas import RESPONSE_MODELS

_REF = "#/components/schemas/{model}"


@functools.lru_cache(maxsize=4)
def _document(limits: RequestLimits, server_url: str | None) -> dict[str, Any]:
    _, defs = models_json_schema([(m, "serialization") for m in RESPONSE_MODELS], ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    request = request_json_schema(limits)
    for name, sub in request.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["JobRequest"] = request

    def ref(name: str) -> dict[str, str]:
        return {"$ref": _REF.format(model=name)}

    def body(name: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(name)}}}

    def error(description: str, retry_after: bool = False) -> dict[str, Any]:
        response = body("Error", description)
        if retry_after:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
            }
        return response

    common = {
        "401": error("missing, malformed, unknown or revoked API key"),
        "503": error("a backend is unavailable", retry_after=True),
    }
    not_found = {"404": error("no such id for this caller (other users' ids are not found either)")}
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/v1/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "same key and body return the same job; same key, other body: 409",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("JobRequest")}}},
                "responses": {
                    "202": {
                        **body("Job", "the job is queued (or, for a replayed Idempotency-Key, the existing job)"),
                        "headers": {"Location": {"description": "the job's URL", "schema": {"type": "string"}}},
                    },
                    "400": error("invalid request; each bad field is named in details"),
                    "409": error("the Idempotency-Key was used with another body"),
                    "413": error("the body is larger than the limit"),
                    "415": error("the body is not application/json"),
                    "429": error("rate limit, concurrency limit or daily image quota reached", retry_after=True),
                    **common,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List the caller's jobs, newest first",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                    },
                    {
                        "name": "page_size",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {"name": "page_token", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": body("JobList", "a page of jobs"),
                    "400": error("invalid status, page_size or page_token"),
                    **common,
                },
            },
        },
        "/v1/jobs/{id}": {
            "get": {
                "operationId": "getJob",
                "summary": "Get a job",
                "parameters": [id_param],
                "responses": {"200": body("Job", "the job"), **not_found, **common},
            }
        },
        "/v1/jobs/{id}:cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a queued or running job",
                "parameters": [id_param],
                "responses": {
                    "200": body("Job", "the cancelled job"),
                    "409": error("the job already ended"),
                    **not_found,
                    **common,
                },
            }
        },
        "/v1/batches/{id}": {
            "get": {
                "operationId": "getBatch",
                "summary": "Get a batch made from an upload",
                "parameters": [id_param],
                "responses": {"200": body("Batch", "the batch"), **not_found, **common},
            }
        },
        "/v1/usage": {
            "get": {
                "operationId": "getUsage",
                "summary": "The caller's usage and limits",
                "responses": {"200": body("Usage", "usage totals"), **common},
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "Models jobs can name",
                "responses": {"200": body("ModelList", "registered models"), **common},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "security": [],
                "responses": {"200": body("Health", "the function is up")},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "gpupipe",
            "version": "1",
            "description": "Submit image-generation jobs to a GPU pipeline, follow them, and fetch their images. "
            'Every error body is `{"error": {"code", "message", "details": [{"field", "message"}]}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "an API key"}},
        },
        "security": [{"apiKey": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def openapi_document(limits: RequestLimits, server_url: str | None = None) -> dict[str, Any]:
    """The document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document(limits, server_url))
