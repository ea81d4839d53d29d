"""`python -m emulators up|status|down` as a user runs it: a subprocess, a state directory,
a `source`-able local.env, and the real gcloud and gsutil CLIs uploading to the local inbox.

One suite is started for the module (`cli_suite`) and shared; `test_down_*` at the end stops
it and checks that nothing of it is left.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.bootstrap import bootstrap
from core.settings import Settings
from emulators import processes
from emulators.processes import ProcessId

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def run_cli(
    *args: str, state_dir: Path, overrides: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m emulators --state-dir D ARGS` with a clean environment (never this session's
    emulator variables) plus `overrides`."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "JAVA_HOME") if name in os.environ}
    env.update({"GPUPIPE_ENV": "local", **(overrides or {})})
    return subprocess.run(
        [sys.executable, "-m", "emulators", "--state-dir", str(state_dir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line)[1].partition("=")
            env[name] = value
    return env


def listening_ports() -> set[int]:
    """Ports with a TCP socket in LISTEN state, from /proc/net/tcp{,6}."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A":
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class CliSuite:
    state_dir: Path
    env_file: Path
    env: dict[str, str]
    settings: Settings
    up_seconds: float


@pytest.fixture(scope="module")
def cli_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliSuite]:
    state_dir = tmp_path_factory.mktemp("cli-suite")
    began = time.monotonic()
    result = run_cli("up", "--emulators-only", state_dir=state_dir)
    up_seconds = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    env_file = state_dir / "local.env"
    env = read_env_file(env_file)
    try:
        yield CliSuite(state_dir, env_file, env, Settings.from_env(env), up_seconds)
    finally:
        if (state_dir / "suite.json").exists():
            run_cli("down", state_dir=state_dir)


def shell(command: str, suite: CliSuite, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `command` in bash after `source local.env`, as the README tells a user to."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(suite.env_file))} && {command}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for_upload_event(settings: Settings, object_id: str, timeout: float = 30) -> tuple[dict[str, str], list[str]]:
    """Pull the uploads subscription until the notification for `object_id` arrives, acking
    everything; returns its attributes and the object ids of every event seen."""
    subscriber = bootstrap(settings).subscriber
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        for message in subscriber.pull(settings.names.uploads_subscription, max_messages=10, timeout=5):
            message.ack()
            attributes = dict(message.attributes)
            seen.append(attributes.get("objectId", "?"))
            if attributes.get("objectId") == object_id:
                assert json.loads(message.data)["name"] == object_id
                return attributes, seen
    raise AssertionError(f"no upload event for {object_id} within {timeout} s (saw {seen})")


def test_local_env_exports_the_contract_variables(cli_suite: CliSuite) -> None:
    env = cli_suite.env
    required = {
        "GOOGLE_CLOUD_PROJECT", "PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
        "GPUPIPE_ENV", "GPUPIPE_INBOX_BUCKET", "GPUPIPE_OUTPUTS_BUCKET", "GPUPIPE_MODELS_BUCKET",
        "GPUPIPE_JOBS_TOPIC", "GPUPIPE_UPLOADS_TOPIC", "GPUPIPE_PUBLIC_STORAGE_URL",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", "CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "CLOUDSDK_CORE_PROJECT",
        "CLOUDSDK_CONFIG", "BOTO_CONFIG",
    }  # fmt: skip
    assert required <= env.keys()
    assert env["GPUPIPE_ENV"] == "local"
    assert env["CLOUDSDK_CORE_PROJECT"] == env["GOOGLE_CLOUD_PROJECT"] == cli_suite.settings.project_id
    assert Path(env["CLOUDSDK_CONFIG"]).is_dir()
    boto = Path(env["BOTO_CONFIG"]).read_text(encoding="utf-8")
    assert "https_validate_certificates = False" in boto
    https_port = int(boto.split("gs_json_port = ", 1)[1].split()[0])
    assert https_port in listening_ports()
    assert cli_suite.settings.backend == "gcp"
    assert cli_suite.settings.names.inbox_bucket == env["GPUPIPE_INBOX_BUCKET"]


def test_gcloud_storage_cp_to_the_inbox_publishes_object_finalize(cli_suite: CliSuite, tmp_path: Path) -> None:
    (tmp_path / "some.jsonl").write_text('{"prompt": "a red bicycle"}\n', encoding="utf-8")

    result = shell('gcloud storage cp some.jsonl "gs://$GPUPIPE_INBOX_BUCKET/demo/x.jsonl"', cli_suite, tmp_path)

    assert result.returncode == 0, result.stderr
    attributes, _ = wait_for_upload_event(cli_suite.settings, "demo/x.jsonl")
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["bucketId"] == cli_suite.settings.names.inbox_bucket
    blobs = bootstrap(cli_suite.settings).blobs
    assert blobs.read(cli_suite.settings.names.inbox_bucket, "demo/x.jsonl") == b'{"prompt": "a red bicycle"}\n'


def test_gsutil_cp_to_the_inbox_publishes_object_finalize(cli_suite: CliSuite, tmp_path: Path) -> None:
    (tmp_path / "more.jsonl").write_text('{"prompt": "a blue kite"}\n', encoding="utf-8")

    result = shell('gsutil -q cp more.jsonl "gs://$GPUPIPE_INBOX_BUCKET/demo/y.jsonl"', cli_suite, tmp_path)

    assert result.returncode == 0, result.stderr
    attributes, _ = wait_for_upload_event(cli_suite.settings, "demo/y.jsonl")
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["bucketId"] == cli_suite.settings.names.inbox_bucket


def test_uploads_outside_the_inbox_publish_nothing(cli_suite: CliSuite, tmp_path: Path) -> None:
    """The notification is on the inbox bucket only, as in GCP."""
    (tmp_path / "out.txt").write_text("x", encoding="utf-8")
    uploads = 'gcloud storage cp out.txt "gs://$GPUPIPE_OUTPUTS_BUCKET/o.txt"'
    uploads += ' && gcloud storage cp out.txt "gs://$GPUPIPE_INBOX_BUCKET/marker.txt"'
    assert shell(uploads, cli_suite, tmp_path).returncode == 0

    attributes, seen = wait_for_upload_event(cli_suite.settings, "marker.txt")

    assert attributes["bucketId"] == cli_suite.settings.names.inbox_bucket
    assert "o.txt" not in seen


def test_up_twice_says_already_up(cli_suite: CliSuite) -> None:
    result = run_cli("up", "--emulators-only", state_dir=cli_suite.state_dir)

    assert result.returncode == 0
    assert "already up" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_status_reports_every_process(cli_suite: CliSuite) -> None:
    result = run_cli("status", "--json", state_dir=cli_suite.state_dir)

    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["running"] is True
    assert all(status["answering"].values())
    names = {p["name"]: p for p in status["processes"]}
    assert set(names) == {"pubsub", "firestore", "storage"}
    assert names["firestore"]["children"], "the Firestore wrapper's Java child is recorded"


def test_down_leaves_no_process_and_no_listener(cli_suite: CliSuite) -> None:
    state = json.loads((cli_suite.state_dir / "suite.json").read_text(encoding="utf-8"))
    recorded = [ProcessId(*r["process"]) for r in state["processes"]]
    recorded += [ProcessId(*c) for r in state["processes"] for c in r["children"]]
    ports = set(state["ports"].values())
    below = [d for p in recorded for d in processes.descendants(p.pid)]
    assert all(processes.is_running(p) for p in recorded)
    assert ports <= listening_ports()

    result = run_cli("down", state_dir=cli_suite.state_dir)

    assert result.returncode == 0, result.stderr
    assert "stopped" in result.stdout
    assert [p for p in recorded + below if processes.is_running(p)] == []
    assert ports & listening_ports() == set()
    assert not (cli_suite.state_dir / "suite.json").exists()
    assert not cli_suite.env_file.exists()

    again = run_cli("down", state_dir=cli_suite.state_dir)
    assert again.returncode == 0
    assert "not running" in again.stdout
    status = run_cli("status", state_dir=cli_suite.state_dir)
    assert status.returncode == 3
    assert "not running" in status.stdout


# ------------------------------------------------------------------ failures get one clear line
def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "up", "--emulators-only", state_dir=tmp_path, overrides={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}
        )

    assert_one_line_error(result, f"port {port} on 127.0.0.1 (PUBSUB_EMULATOR_HOST) is already in use")
    assert not (tmp_path / "suite.json").exists()


def test_missing_emulator_packages_say_how_to_install(tmp_path: Path) -> None:
    result = run_cli(
        "up", "--emulators-only", state_dir=tmp_path, overrides={"GPUPIPE_CLOUD_SDK_ROOT": str(tmp_path / "no-sdk")}
    )

    assert_one_line_error(result, "gcloud components install pubsub-emulator cloud-firestore-emulator")
    assert "google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator" in result.stderr


def test_missing_java_is_named(tmp_path: Path) -> None:
    result = run_cli("up", "--emulators-only", state_dir=tmp_path, overrides={"PATH": str(tmp_path / "empty-bin")})

    assert_one_line_error(result, "Java not found")


def test_an_emulator_that_dies_while_starting_is_reported_and_the_rest_stopped(tmp_path: Path) -> None:
    """A broken install: the Pub/Sub launcher fails, the Firestore launcher (a wrapper with a
    child, like the real one) starts fine and must be stopped again, child included."""
    sdk = tmp_path / "sdk"
    pubsub = sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    firestore = sdk / "platform/cloud-firestore-emulator/cloud_firestore_emulator"
    pids = tmp_path / "firestore.pids"
    for path, script in (
        # Fail only once the Firestore launcher has started its child (bounded: 10 s).
        (
            pubsub,
            f"for i in $(seq 200); do [ -s {pids} ] && break; sleep 0.05; done\n"
            "echo 'java.net.BindException: Address already in use' >&2\nexit 7\n",
        ),
        (firestore, f"sleep 300 &\necho $$ $! > {pids}\nwait\n"),
    ):
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/bash\n" + script, encoding="utf-8")
        path.chmod(0o755)

    result = run_cli(
        "up", "--emulators-only", state_dir=tmp_path / "state", overrides={"GPUPIPE_CLOUD_SDK_ROOT": str(sdk)}
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith("emulators: pubsub exited with code 7 while starting")
    assert "Address already in use" in result.stderr  # the tail of its log
    wrapper, child = (int(p) for p in pids.read_text(encoding="utf-8").split())
    assert processes.identify(wrapper) is None
    assert processes.identify(child) is None
    assert not (tmp_path / "state/suite.json").exists()
