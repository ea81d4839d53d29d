"""The job request: its schema, validation and normalisation.

One pydantic model, built from the `RequestLimits` in settings, is the single source of truth:
the API and the upload trigger validate with it and the OpenAPI document is generated from it.
Validation rejects rather than corrects, and every error names its field.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
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

# The patterns below are the rules validation applies and, verbatim, the `pattern`s of the
# OpenAPI document. Each is written to mean the same in Python's `re` (with `fullmatch` or
# `search` as noted) and in the ECMA-262 dialect JSON Schema uses: explicit classes rather than
# `\s`, `\w` or `.` (whose sets differ between the two; `[\s\S]` is any character in both) and
# no reliance on `$` before a trailing newline, which only Python's `$` allows.

# A prompt must hold a character that is not whitespace as `str.isspace` (and so `str.strip`)
# defines it; searched for anywhere in the prompt.
NON_BLANK_PATTERN = "[^\\t-\\r\\x1c- \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
_NON_BLANK = re.compile(NON_BLANK_PATTERN)

# A webhook is an absolute https URL of printable ASCII: optional userinfo, a DNS name or a
# bracketed IPv6 address, an optional port from 0 to 65535, then an optional path, query or
# fragment. Non-ASCII host names must be sent in their punycode form.
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
WEBHOOK_PATTERN = (
    "^https://"
    "(?:[A-Za-z0-9._~!$&'()*+,;=:%-]+@)?"
    "(?:[A-Za-z0-9_-]+(?:\\.[A-Za-z0-9_-]+)*|\\[[0-9A-Fa-f:.]+\\])"
    f"(?::{_PORT})?"
    "(?:[/?#][!-~]*)?$"
)
_WEBHOOK = re.compile(WEBHOOK_PATTERN)
WEBHOOK_MAX_CHARS = 2048

# Metadata keys become Firestore field names (`input.metadata.<key>`): Firestore refuses an
# empty name and reserves names of the form `__name__` (the emulator and the server alike),
# and a field path is at most 1500 bytes, which 128 characters (at most 512 bytes) stay well
# inside. Any other string, dots and backticks included, is stored as it is.
METADATA_KEY_MAX_CHARS = 128
RESERVED_METADATA_KEY_PATTERN = "^__[\\s\\S]*__$"
METADATA_KEY_RULE = (
    f"keys must be 1 to {METADATA_KEY_MAX_CHARS} characters and not of the form __name__ (reserved by Firestore)"
)


def _metadata_key(key: str) -> str:
    reserved = len(key) >= 4 and key.startswith("__") and key.endswith("__")
    if not 1 <= len(key) <= METADATA_KEY_MAX_CHARS or reserved:
        raise ValueError(METADATA_KEY_RULE)
    return key


MetadataKey = Annotated[
    StrictStr,
    AfterValidator(_metadata_key),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": METADATA_KEY_MAX_CHARS,
            "not": {"pattern": RESERVED_METADATA_KEY_PATTERN},
        }
    ),
]


def _integral(value: Any) -> Any:
    """JSON has one kind of number and JSON Schema's `integer` is any number without a fraction,
    so `64.0` is the integer 64, as the OpenAPI document says; `64.5`, `"64"` and `true` are not.
    Beyond 2**53 a float is no exact integer, and out of every range here anyway: left as it is."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _json_int(**constraints: Any) -> Any:
    """An integer field of the request (metadata values keep the number they were sent as).
    The constraints come before the validator so that they stay in the JSON schema."""
    return Annotated[StrictInt, Field(**constraints), BeforeValidator(_integral)]


MetadataValue = StrictStr | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictBool | None


class _RequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("webhook", check_fields=False)
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not _WEBHOOK.fullmatch(value):
            raise ValueError("must be an https:// URL with a host, in printable ASCII without spaces")
        return value

    @field_validator("prompt", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not _NON_BLANK.search(value):
            raise ValueError("must contain a non-space character")
        return value


@functools.lru_cache(maxsize=8)
def request_model(limits: RequestLimits) -> type[BaseModel]:
    """The request model for these limits (cached: limits are frozen and hashable)."""
    size = _json_int(
        ge=limits.min_size,
        le=limits.max_size,
        multiple_of=8,
        description=f"pixels; a multiple of 8 from {limits.min_size} to {limits.max_size}",
    )
    text = Annotated[StrictStr, Field(min_length=1, max_length=limits.max_prompt_chars)]
    guidance = Field(ge=0, le=limits.max_guidance_scale)

    fields: dict[str, Any] = {
        "prompt": (
            text,
            Field(description="what to draw; not only whitespace", json_schema_extra={"pattern": NON_BLANK_PATTERN}),
        ),
        "negative_prompt": (
            Annotated[StrictStr, Field(max_length=limits.max_prompt_chars)] | None,
            Field(default=None, description="what to avoid"),
        ),
        "width": (size, Field(default=limits.default_size)),
        "height": (size, Field(default=limits.default_size)),
        "num_inference_steps": (
            _json_int(ge=1, le=limits.max_steps),
            Field(default=limits.default_steps, description="denoising steps"),
        ),
        "guidance_scale": (
            # The bounds sit on each branch: on the union they would not reach the JSON schema.
            Annotated[StrictFloat, guidance, Field(allow_inf_nan=False)] | Annotated[StrictInt, guidance],
            Field(default=limits.default_guidance_scale, description="classifier-free guidance; 0 or 1 turns it off"),
        ),
        "num_images": (
            _json_int(ge=1, le=limits.max_images_per_job),
            Field(default=1),
        ),
        "seed": (
            _json_int(ge=0, le=MAX_SEED) | None,
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
            Annotated[StrictStr, Field(max_length=WEBHOOK_MAX_CHARS)] | None,
            Field(
                default=None,
                description="https URL called when the job ends",
                json_schema_extra=_webhook_schema,
            ),
        ),
        "metadata": (
            dict[MetadataKey, MetadataValue] | None,
            Field(
                default=None,
                max_length=limits.max_metadata_keys,
                description=f"your own small object of strings, numbers, booleans and nulls (at most "
                f"{limits.max_metadata_keys} keys, {limits.max_metadata_bytes} bytes as compact JSON with "
                f"non-ASCII characters \\u-escaped), returned with the job; {METADATA_KEY_RULE}",
            ),
        ),
    }
    return create_model("JobRequest", __base__=_RequestBase, **fields)


def _webhook_schema(schema: dict[str, Any]) -> None:
    """The webhook's pattern on its string branch (the field's own `pattern` would be enforced
    by pydantic with a message that quotes the whole expression)."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "string":
            branch["pattern"] = WEBHOOK_PATTERN


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
    # Drop pydantic's union-branch marker ("constrained-int", "str", ...), which follows the
    # union's own place in the path; only there, as a metadata key may be called "str" too.
    if len(loc) > 1 and (loc[-1] in _UNION_TAGS or loc[-1].startswith(("function-", "constrained-"))):
        loc = loc[:-1]
    if loc[-1:] == ["[key]"]:
        # A bad key of an object: name the object (the key itself may be empty); the message quotes it.
        loc = loc[:-2]
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


_UNION_TAGS = {"str", "int", "float", "bool", "none"}


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
