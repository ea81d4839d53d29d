"""Fixtures for the functions' unit tests: the real functions-framework apps over memory fakes
that the test holds too (installed through `functions.wiring.install`)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import flask
import functions_framework
import pytest

from adapters.bootstrap import bootstrap
from adapters.memory import MemoryBackends
from core.settings import Settings
from core.users import User
from functions import wiring

MAIN = str(pathlib.Path(__file__).resolve().parents[3] / "functions" / "main.py")


@dataclass(frozen=True)
class Caller:
    user: User
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def services(memory_settings: Settings, memory_backends: MemoryBackends) -> Iterator[wiring.Services]:
    backends = bootstrap(
        memory_settings,
        blobs=memory_backends.blobs,
        documents=memory_backends.documents,
        publisher=memory_backends.pubsub,
        subscriber=memory_backends.pubsub,
        messaging_admin=memory_backends.pubsub,
    )
    yield wiring.install(memory_settings, backends)
    wiring.reset()


def make_app(target: str) -> flask.Flask:
    return functions_framework.create_app(target=target, source=MAIN)


@pytest.fixture
def client(services: wiring.Services) -> flask.testing.FlaskClient:
    return make_app("api").test_client()


def new_caller(services: wiring.Services, user_id: str, **limits: int) -> Caller:
    user = services.accounts.create_user(user_id, user_id=user_id)
    if limits:
        user = services.accounts.set_limits(user_id, **limits)
    return Caller(user, services.accounts.create_key(user_id).plain)


@pytest.fixture
def alice(services: wiring.Services) -> Caller:
    return new_caller(services, "alice")


@pytest.fixture
def bob(services: wiring.Services) -> Caller:
    return new_caller(services, "bob")
