"""Logging format, accounts and the admin commands."""

from __future__ import annotations

import io
import json
import logging

import pytest

from adapters.bootstrap import bootstrap
from adapters.memory import MemoryBackends
from client import admin
from core.accounts import Accounts
from core.errors import Conflict, InvalidArgument, Unauthenticated
from core.logs import CloudLoggingFormatter, TextFormatter, configure_logging, trace_context
from core.settings import Settings
from core.users import parse_key_id


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gpupipe.test", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_use_cloud_logging_field_names():
    formatter = CloudLoggingFormatter("proj")
    with trace_context("0af7651916cd43dd8448eb211c80319c/123;o=1"):
        line = json.loads(formatter.format(_record("job queued", job_id="job_1", user_id="u", batch_id="b")))
    assert line["severity"] == "WARNING" and line["message"] == "job queued"
    assert line["job_id"] == "job_1" and line["user_id"] == "u" and line["batch_id"] == "b"
    assert line["logging.googleapis.com/trace"] == "projects/proj/traces/0af7651916cd43dd8448eb211c80319c"
    assert "time" in line
    without = json.loads(formatter.format(_record("no trace")))
    assert "logging.googleapis.com/trace" not in without and "job_id" not in without


def test_w3c_traceparent_is_understood():
    with trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"):
        line = json.loads(CloudLoggingFormatter("p").format(_record("x")))
    assert line["logging.googleapis.com/trace"].endswith("/4bf92f3577b34da6a3ce929d0e0e4736")


def test_text_format_in_tests_and_configure_is_idempotent():
    assert "job_id=j" in TextFormatter().format(_record("hello", job_id="j"))
    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging(settings)
        configure_logging(settings)
        ours = [h for h in root.handlers if h.get_name() == "gpupipe"]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def accounts(memory_settings: Settings, memory_backends: MemoryBackends) -> Accounts:
    return Accounts(memory_backends.documents, memory_settings)


def test_keys_are_stored_as_digests_and_authenticate(accounts, memory_backends):
    user = accounts.create_user("Alice Example")
    issued = accounts.create_key(user.id)
    stored = memory_backends.documents.get("api_keys", issued.key.id)
    assert stored is not None and issued.plain not in json.dumps(stored, default=str)
    assert accounts.authenticate(f"Bearer {issued.plain}").id == user.id
    assert parse_key_id(issued.plain) == issued.key.id
    with pytest.raises(Unauthenticated):
        accounts.authenticate(f"Bearer {issued.plain[:-1]}x")
    accounts.revoke_key(issued.key.id)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(f"Bearer {issued.plain}")


def test_user_ids_are_checked_and_unique(accounts):
    accounts.create_user("bob", user_id="bob")
    with pytest.raises(Conflict):
        accounts.create_user("bob again", user_id="bob")
    with pytest.raises(InvalidArgument):
        accounts.create_user("bad", user_id="Bad/Id")
    with pytest.raises(InvalidArgument):
        accounts.set_limits("bob", daily_images=-1)
    assert accounts.set_limits("bob", daily_images=5).limits.daily_images == 5


def _admin(argv: list[str], backends: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(argv, {"GPUPIPE_ENV": "test"}, stdout=out, stderr=err, backends=backends)
    return code, out.getvalue(), err.getvalue()


def test_admin_commands_end_to_end(memory_settings, memory_backends):
    backends = bootstrap(memory_settings, documents=memory_backends.documents)
    code, out, _ = _admin(["create-user", "Demo User", "--json", "--daily-images", "7"], backends)
    assert code == 0
    created = json.loads(out)
    assert list(created) == ["user_id", "api_key"] and out.endswith("}\n") and out.count("\n") == 1
    user_id = created["user_id"]
    accounts = Accounts(memory_backends.documents, memory_settings)
    assert accounts.authenticate(f"Bearer {created['api_key']}").limits.daily_images == 7

    code, out, _ = _admin(["create-key", user_id, "--json"], backends)
    second = json.loads(out)
    code, out, _ = _admin(["list-keys", user_id, "--json"], backends)
    keys = json.loads(out)
    assert len(keys) == 2 and created["api_key"] not in out and second["api_key"] not in out
    assert _admin(["revoke-key", second["key_id"]], backends)[0] == 0
    with pytest.raises(Unauthenticated):
        accounts.authenticate(f"Bearer {second['api_key']}")
    code, out, _ = _admin(
        ["set-limits", user_id, "--max-concurrent-jobs", "2", "--requests-per-minute", "9", "--json"], backends
    )
    assert json.loads(out)["limits"] == {"max_concurrent_jobs": 2, "daily_images": 7, "requests_per_minute": 9}
    code, out, _ = _admin(["list-users", "--json"], backends)
    assert [u["user_id"] for u in json.loads(out)] == [user_id]
    code, _, err = _admin(["revoke-key", "nosuchkey"], backends)
    assert code == admin.EXIT_NOT_FOUND and "not found" in err
