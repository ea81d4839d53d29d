"""Users, API keys and per-user limits.

An API key looks like `gp_<key id>_<secret>`. Only an HMAC-SHA256 digest of the whole key
(keyed with a pepper from settings) is stored, under the key id; checking a key is one document
read and a constant-time comparison. The plain key is shown once, at creation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.settings import UserLimitDefaults

KEY_PATTERN = re.compile(r"^gp_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})$")
USER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


@dataclass(frozen=True)
class UserLimits:
    max_concurrent_jobs: int
    daily_images: int
    requests_per_minute: int

    @classmethod
    def defaults(cls, defaults: UserLimitDefaults) -> UserLimits:
        return cls(
            max_concurrent_jobs=defaults.max_concurrent_jobs,
            daily_images=defaults.daily_images,
            requests_per_minute=defaults.requests_per_minute,
        )


@dataclass
class User:
    id: str
    name: str
    created_at: dt.datetime
    limits: UserLimits
    disabled: bool = False

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("id")
        return doc

    @classmethod
    def from_document(cls, doc_id: str, doc: Mapping[str, Any]) -> User:
        return cls(
            id=doc_id,
            name=doc["name"],
            created_at=doc["created_at"],
            limits=UserLimits(**doc["limits"]),
            disabled=bool(doc.get("disabled", False)),
        )


@dataclass
class ApiKey:
    """A stored key: never the key itself, only its digest."""

    id: str
    user_id: str
    digest: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
    label: str = field(default="")

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("id")
        return doc

    @classmethod
    def from_document(cls, doc_id: str, doc: Mapping[str, Any]) -> ApiKey:
        return cls(
            id=doc_id,
            **{k: doc[k] for k in ("user_id", "digest", "created_at")},
            revoked_at=doc.get("revoked_at"),
            label=doc.get("label", ""),
        )


def new_api_key() -> tuple[str, str]:
    """A fresh key and its id: (key_id, plain key)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    key_id = "".join(secrets.choice(alphabet) for _ in range(12))
    return key_id, f"gp_{key_id}_{secrets.token_urlsafe(32)}"


def key_digest(plain_key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), plain_key.encode(), hashlib.sha256).hexdigest()


def parse_key_id(plain_key: str) -> str | None:
    """The key id inside a well-formed key, or None for anything else."""
    match = KEY_PATTERN.match(plain_key)
    return match.group(1) if match else None


def key_matches(plain_key: str, stored_digest: str, pepper: str) -> bool:
    return hmac.compare_digest(key_digest(plain_key, pepper), stored_digest)
