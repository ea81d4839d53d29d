"""The job request: its schema, validation and normalisation.

One pydantic model, built from the `RequestLimits` in settings, is the single source of truth:
the API and the upload trigger validate with it and the OpenAPI document is generated from it.
Validation rejects rather than corrects, and every error names its field.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
    field_validator,
)

from core.errors import FieldError, InvalidArgument
from core.settings import RequestLimits

MAX_SEED = 2**32 - 1
OUTPUT_FORMATS = ("png", "webp", "jpeg")
# Scheduler names a job may ask for; the worker maps each to a diffusers scheduler class.
SCHEDULERS = ("ddim", "pndm", "euler", "euler_ancestral", "dpm_solver", "lms")
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"

MetadataValue = StrictStr | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictBool | None


class _RequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("webhook", check_fields=False)
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL with a host")
        return value

    @field_validator("prompt", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain a non-space character")
        return value


@functools.lru_cache(maxsize=8)
def request_model(limits: RequestLimits) -> type[BaseModel]:
    """The request model for these limits (cached: limits are frozen and hashable)."""
    size = Annotated[
        StrictInt,
        Field(
            ge=limits.min_size,
            le=limits.max_size,
            multiple_of=8,
            description=f"pixels; a multiple of 8 from {limits.min_size} to {limits.max_size}",
        ),
    ]
    text = Annotated[StrictStr, Field(min_length=1, max_length=limits.max_prompt_chars)]

    fields: dict[str, Any] = {
        "prompt": (text, Field(description="what to draw")),
        "negative_prompt": (
            Annotated[StrictStr, Field(max_length=limits.max_prompt_chars)] | None,
            Field(default=None, description="what to avoid"),
        ),
        "width": (size, Field(default=limits.default_size)),
        "height": (size, Field(default=limits.default_size)),
        "num_inference_steps": (
            Annotated[StrictInt, Field(ge=1, le=limits.max_steps)],
            Field(default=limits.default_steps, description="denoising steps"),
        ),
        "guidance_scale": (
            Annotated[StrictFloat | StrictInt, Field(ge=0, le=limits.max_guidance_scale, allow_inf_nan=False)],
            Field(default=limits.default_guidance_scale, description="classifier-free guidance; 0 or 1 turns it off"),
        ),
        "num_images": (
            Annotated[StrictInt, Field(ge=1, le=limits.max_images_per_job)],
            Field(default=1),
        ),
        "seed": (
            Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] | None,
            Field(default=None, description="chosen and recorded when absent; image i uses seed + i"),
        ),
        "model": (
            Annotated[StrictStr, Field(pattern=MODEL_NAME_PATTERN)] | None,
            Field(default=None, description="model name; the default model when absent"),
        ),
        "scheduler": (
            Literal[SCHEDULERS] | None,  # type: ignore[valid-type]
            Field(default=None, description="the model's own scheduler when absent"),
        ),
        "output_format": (Literal[OUTPUT_FORMATS], Field(default="png")),  # type: ignore[valid-type]
        "webhook": (
            Annotated[StrictStr, Field(max_length=2048)] | None,
            Field(default=None, description="https URL called when the job ends"),
        ),
        "metadata": (
            dict[StrictStr, MetadataValue] | None,
            Field(
                default=None,
                max_length=limits.max_metadata_keys,
                description=f"your own small object (at most {limits.max_metadata_keys} keys, "
                f"{limits.max_metadata_bytes} bytes as JSON), returned with the job",
            ),
        ),
    }
    return create_model("JobRequest", __base__=_RequestBase, **fields)


def validate_request(data: Any, limits: RequestLimits, *, choose_seed: bool = True) -> dict[str, Any]:
    """Validate a decoded JSON request; return the normalized request (defaults filled in,
    seed chosen when absent). Raises `InvalidArgument` naming every bad field."""
    if not isinstance(data, Mapping):
        raise InvalidArgument(
            "the request body must be a JSON object",
            [FieldError("(body)", f"expected an object, got {type(data).__name__}")],
        )
    model = request_model(limits)
    try:
        request = model.model_validate(dict(data))
    except ValidationError as exc:
        details: list[FieldError] = []
        for err in exc.errors():
            error = _field_error(err)
            # A union (metadata values, optional fields) reports one error per branch: keep the first.
            if all(d.field != error.field for d in details):
                details.append(error)
        names = ", ".join(sorted({d.field for d in details}))
        raise InvalidArgument(f"invalid job request: {names}", details) from None
    normalized = request.model_dump()
    metadata = normalized.get("metadata")
    if metadata is not None:
        size = len(json.dumps(metadata, separators=(",", ":")).encode())
        if size > limits.max_metadata_bytes:
            raise InvalidArgument(
                "invalid job request: metadata",
                [FieldError("metadata", f"must be at most {limits.max_metadata_bytes} bytes as JSON, got {size}")],
            )
    if normalized["seed"] is None and choose_seed:
        normalized["seed"] = secrets.randbelow(MAX_SEED + 1)
    return normalized


def request_json_schema(limits: RequestLimits) -> dict[str, Any]:
    """The JSON schema of a job request (used in the OpenAPI document)."""
    return request_model(limits).model_json_schema(mode="validation")


def _field_error(err: Mapping[str, Any]) -> FieldError:
    loc = [str(p) for p in err["loc"]]
    # Drop pydantic's union-branch markers ("constrained-int", "str", ...) from the path.
    loc = [p for p in loc if p not in _UNION_TAGS and not p.startswith(("function-", "constrained-"))]
    field = ".".join(loc) or "(body)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return FieldError(field, "is not a known field")
    if kind == "missing":
        return FieldError(field, "is required")
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    message = message[0].lower() + message[1:]
    if "input" in err and kind != "missing":
        message = f"{message}, got {_short(err['input'])}"
    return FieldError(field, message)


_UNION_TAGS = {"str", "int", "float", "bool", "none", "dict[str,union[str,int,float,bool,none]]"}


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
