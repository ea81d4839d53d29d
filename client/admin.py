"""`gpupipe admin ...`: operator commands for users, API keys and limits.

They talk to the document store directly (Firestore, or the emulator with the local
environment), not through the HTTP API: the API has no admin surface to attack.

    gpupipe admin create-user NAME [--user-id ID] [--json] [--max-concurrent-jobs N] ...
    gpupipe admin create-key USER [--label TEXT] [--json]
    gpupipe admin list-users [--json]
    gpupipe admin list-keys USER [--json]
    gpupipe admin revoke-key KEY_ID
    gpupipe admin set-limits USER [--max-concurrent-jobs N] [--daily-images N] [--requests-per-minute N]

A key is printed once, at creation; only its digest is stored. `create-user` also creates the
user's first key. `create-user NAME --json` prints exactly `{"user_id": ..., "api_key": ...}`.
Runs alone too: `python -m client.admin create-user NAME --json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from client.context import Context

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `admin` command group to a parent parser's sub-commands."""
    admin = subparsers.add_parser("admin", help="manage users, API keys and limits (operators)")
    commands = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)

    create_user = commands.add_parser("create-user", help="create a user and their first API key")
    create_user.add_argument("name")
    create_user.add_argument("--user-id", help="the user id (default: made from the name plus a random suffix)")
    _limit_options(create_user)
    _json_option(create_user)

    create_key = commands.add_parser("create-key", help="create another API key for a user (shown once)")
    create_key.add_argument("user_id", metavar="USER")
    create_key.add_argument("--label", default="", help="a note on what the key is for")
    _json_option(create_key)

    list_users = commands.add_parser("list-users", help="list users and their limits")
    _json_option(list_users)

    list_keys = commands.add_parser("list-keys", help="list a user's keys (ids only; keys are never stored)")
    list_keys.add_argument("user_id", metavar="USER")
    _json_option(list_keys)

    revoke = commands.add_parser("revoke-key", help="revoke an API key; requests with it then get 401")
    revoke.add_argument("key_id", metavar="KEY_ID")
    _json_option(revoke)

    limits = commands.add_parser("set-limits", help="change a user's limits")
    limits.add_argument("user_id", metavar="USER")
    _limit_options(limits)
    _json_option(limits)

    return admin


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-concurrent-jobs", type=int, help="jobs queued or running at once")
    parser.add_argument("--daily-images", type=int, help="images per UTC day")
    parser.add_argument("--requests-per-minute", type=int, help="job submissions per minute")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def handle(ctx: Context) -> int:
    """Run `gpupipe admin ...` (registered by `client.command_parser`) with its context."""
    return execute(ctx.args, ctx.environ, ctx.stdout, ctx.stderr)


def execute(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    stdout: TextIO,
    stderr: TextIO,
    *,
    backends: Any = None,
) -> int:
    """Run a parsed admin command. `backends` (an `adapters.bootstrap.Backends`) replaces the
    ones the environment describes (tests)."""
    from adapters.bootstrap import bootstrap
    from core.accounts import Accounts
    from core.errors import GpupipeError, NotFoundError
    from core.ports import AdapterError
    from core.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(environ)
    except SettingsError as exc:
        stderr.write(f"gpupipe admin: {exc}\n")
        return EXIT_USAGE
    accounts = Accounts((backends or bootstrap(settings)).documents, settings)
    try:
        return _COMMANDS[args.admin_command](accounts, args, stdout)
    except NotFoundError as exc:
        stderr.write(f"gpupipe admin: {exc.message}\n")
        return EXIT_NOT_FOUND
    except GpupipeError as exc:
        details = "".join(f"\n  {d.field}: {d.message}" for d in getattr(exc, "details", []))
        stderr.write(f"gpupipe admin: {exc.message}{details}\n")
        return EXIT_ERROR
    except AdapterError as exc:
        stderr.write(f"gpupipe admin: the document store failed: {exc}\n")
        return EXIT_ERROR


def _emit(stdout: TextIO, as_json: bool, data: Any, text: str) -> int:
    stdout.write((json.dumps(data) if as_json else text) + "\n")
    return EXIT_OK


def _limits(args: argparse.Namespace) -> dict[str, int | None]:
    return {
        "max_concurrent_jobs": args.max_concurrent_jobs,
        "daily_images": args.daily_images,
        "requests_per_minute": args.requests_per_minute,
    }


def _create_user(accounts: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    user = accounts.create_user(args.name, user_id=args.user_id)
    if any(v is not None for v in _limits(args).values()):
        user = accounts.set_limits(user.id, **_limits(args))
    issued = accounts.create_key(user.id, label="created with the user")
    text = (
        f"user {user.id} created\napi key (shown once, store it now): {issued.plain}\n"
        f"limits: {_format_limits(user.limits)}"
    )
    return _emit(stdout, args.json, {"user_id": user.id, "api_key": issued.plain}, text)


def _create_key(accounts: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    issued = accounts.create_key(args.user_id, label=args.label)
    data = {"user_id": args.user_id, "key_id": issued.key.id, "api_key": issued.plain}
    return _emit(stdout, args.json, data, f"api key {issued.key.id} (shown once, store it now): {issued.plain}")


def _list_users(accounts: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    users = accounts.list_users()
    data = [{"user_id": u.id, "name": u.name, "disabled": u.disabled, "limits": dict(vars(u.limits))} for u in users]
    rows = [f"{u.id}\t{u.name}\t{'disabled' if u.disabled else 'active'}\t{_format_limits(u.limits)}" for u in users]
    return _emit(stdout, args.json, data, "\n".join(rows) if rows else "no users")


def _list_keys(accounts: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    accounts.require_user(args.user_id)
    keys = accounts.list_keys(args.user_id)
    data = [
        {
            "key_id": k.id,
            "label": k.label,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in keys
    ]
    rows = [f"{k.id}\t{'revoked' if k.revoked_at else 'active'}\t{k.created_at.isoformat()}\t{k.label}" for k in keys]
    return _emit(stdout, args.json, data, "\n".join(rows) if rows else "no keys")


def _revoke_key(accounts: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    key = accounts.revoke_key(args.key_id)
    data = {"key_id": key.id, "user_id": key.user_id, "revoked_at": key.revoked_at.isoformat()}
    return _emit(stdout, args.json, data, f"api key {key.id} of {key.user_id} revoked")


def _set_limits(accounts: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    user = accounts.set_limits(args.user_id, **_limits(args))
    data = {"user_id": user.id, "limits": dict(vars(user.limits))}
    return _emit(stdout, args.json, data, f"limits of {user.id}: {_format_limits(user.limits)}")


def _format_limits(limits: Any) -> str:
    return (
        f"max_concurrent_jobs={limits.max_concurrent_jobs} daily_images={limits.daily_images} "
        f"requests_per_minute={limits.requests_per_minute}"
    )


_COMMANDS = {
    "create-user": _create_user,
    "create-key": _create_key,
    "list-users": _list_users,
    "list-keys": _list_keys,
    "revoke-key": _revoke_key,
    "set-limits": _set_limits,
}


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    backends: Any = None,
) -> int:
    """`python -m client.admin ...` (the same commands as `gpupipe admin ...`)."""
    parser = argparse.ArgumentParser(prog="gpupipe")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["admin", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    return execute(
        args, os.environ if environ is None else environ, stdout or sys.stdout, stderr or sys.stderr, backends=backends
    )


if __name__ == "__main__":
    raise SystemExit(main())
