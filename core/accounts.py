"""Accounts: users, their API keys and limits, and authentication of a bearer key.

Keys are stored as HMAC digests only (see `core.users`); the plain key exists once, in the
return value of `create_key`. Authentication is a key read, a user read and a constant-time
comparison, with the same work done for unknown keys so that timing does not reveal which key
ids exist.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from core import collection_names as c
from core.errors import Conflict, FieldError, InvalidArgument, NotFoundError, Unauthenticated
from core.ports import AlreadyExists, DocumentStore, Filter
from core.settings import Settings
from core.timeutil import utcnow
from core.users import USER_ID_PATTERN, ApiKey, User, UserLimits, key_digest, key_matches, new_api_key, parse_key_id

log = logging.getLogger(__name__)

_DUMMY_DIGEST = "0" * 64


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: `plain` is shown to its owner once and never stored."""

    key: ApiKey
    plain: str


class Accounts:
    def __init__(self, documents: DocumentStore, settings: Settings, *, clock: Callable[[], dt.datetime] = utcnow):
        self._documents = documents
        self._pepper = settings.api_key_pepper.get_secret_value()
        self._defaults = settings.user_limits
        self._clock = clock

    # ------------------------------------------------------------------ users
    def create_user(self, name: str, *, user_id: str | None = None, limits: UserLimits | None = None) -> User:
        """Create a user. Without `user_id` one is made from the name plus a random suffix (the
        id is the user's folder in the inbox bucket, so it is kept readable)."""
        name = name.strip()
        if not name:
            raise InvalidArgument("a user needs a name", [FieldError("name", "must not be empty")])
        if user_id is None:
            user_id = f"{_slug(name)}-{secrets.token_hex(3)}"
        if not USER_ID_PATTERN.match(user_id):
            raise InvalidArgument(
                "invalid user id",
                [FieldError("user_id", f"must match {USER_ID_PATTERN.pattern}, got {user_id!r}")],
            )
        user = User(
            id=user_id,
            name=name,
            created_at=self._clock(),
            limits=limits or UserLimits.defaults(self._defaults),
        )
        try:
            self._documents.create(c.USERS, user.id, user.to_document())
        except AlreadyExists:
            raise Conflict(f"user {user_id} already exists") from None
        log.info("user created", extra={"user_id": user.id})
        return user

    def get_user(self, user_id: str) -> User | None:
        doc = self._documents.get(c.USERS, user_id)
        return User.from_document(user_id, doc) if doc is not None else None

    def require_user(self, user_id: str) -> User:
        user = self.get_user(user_id)
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        return user

    def list_users(self) -> list[User]:
        return [User.from_document(d.id, d.data) for d in self._documents.iterate(c.USERS)]

    def set_limits(
        self,
        user_id: str,
        *,
        max_concurrent_jobs: int | None = None,
        daily_images: int | None = None,
        requests_per_minute: int | None = None,
    ) -> User:
        """Change some of a user's limits; the others keep their value."""
        changes = {
            "max_concurrent_jobs": max_concurrent_jobs,
            "daily_images": daily_images,
            "requests_per_minute": requests_per_minute,
        }
        bad = [FieldError(k, f"must be 0 or more, got {v}") for k, v in changes.items() if v is not None and v < 0]
        if bad:
            raise InvalidArgument("invalid limits", bad)
        user = self.require_user(user_id)
        limits = replace(user.limits, **{k: v for k, v in changes.items() if v is not None})
        self._documents.update(c.USERS, user_id, {"limits": limits.__dict__.copy()})
        log.info("user limits changed", extra={"user_id": user_id})
        return replace(user, limits=limits)

    def set_disabled(self, user_id: str, disabled: bool) -> None:
        self.require_user(user_id)
        self._documents.update(c.USERS, user_id, {"disabled": disabled})

    # ------------------------------------------------------------------ keys
    def create_key(self, user_id: str, *, label: str = "") -> IssuedKey:
        self.require_user(user_id)
        for _ in range(5):
            key_id, plain = new_api_key()
            key = ApiKey(
                id=key_id,
                user_id=user_id,
                digest=key_digest(plain, self._pepper),
                created_at=self._clock(),
                label=label,
            )
            try:
                self._documents.create(c.API_KEYS, key_id, key.to_document())
            except AlreadyExists:  # a 12-character id collided; draw another
                continue
            log.info("api key created", extra={"user_id": user_id, "key_id": key_id})
            return IssuedKey(key, plain)
        raise Conflict("could not allocate a unique key id")

    def list_keys(self, user_id: str) -> list[ApiKey]:
        docs = self._documents.iterate(c.API_KEYS, where=[Filter("user_id", "==", user_id)])
        return sorted((ApiKey.from_document(d.id, d.data) for d in docs), key=lambda k: k.created_at)

    def revoke_key(self, key_id: str) -> ApiKey:
        doc = self._documents.get(c.API_KEYS, key_id)
        if doc is None:
            raise NotFoundError(f"api key {key_id} not found")
        key = ApiKey.from_document(key_id, doc)
        if key.revoked_at is None:
            key = replace(key, revoked_at=self._clock())
            self._documents.update(c.API_KEYS, key_id, {"revoked_at": key.revoked_at})
            log.info("api key revoked", extra={"user_id": key.user_id, "key_id": key_id})
        return key

    # ------------------------------------------------------------------ authentication
    def authenticate(self, authorization: str | None) -> User:
        """The user behind an `Authorization: Bearer <key>` header value.

        Raises `Unauthenticated` for a missing or malformed header, an unknown or revoked key
        and a disabled user, always with the same message."""
        scheme, _, plain = (authorization or "").strip().partition(" ")
        plain = plain.strip()
        key_id = parse_key_id(plain) if scheme.lower() == "bearer" else None
        if key_id is None:
            raise Unauthenticated(_AUTH_MESSAGE)
        doc = self._documents.get(c.API_KEYS, key_id)
        stored = doc.get("digest", _DUMMY_DIGEST) if doc is not None else _DUMMY_DIGEST
        # Compare even for unknown ids so response time does not tell which ids exist.
        matches = key_matches(plain, stored, self._pepper)
        if doc is None or not matches or doc.get("revoked_at") is not None:
            raise Unauthenticated(_AUTH_MESSAGE)
        user = self.get_user(doc["user_id"])
        if user is None or user.disabled:
            raise Unauthenticated(_AUTH_MESSAGE)
        return user


_AUTH_MESSAGE = "a valid API key is required: send `Authorization: Bearer <key>`"


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (slug or "user")[:40].rstrip("-") or "user"
