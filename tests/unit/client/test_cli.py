"""The `gpupipe` command against the real `api` function (in-process) over memory backends."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import cli
from core.uploads import FINALIZE, StorageNotification, UploadTrigger
from tests.unit.client.support import API_URL, FakeTime, Stack

SMALL = ["--width", "64", "--height", "64", "--steps", "2"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Gpupipe:
    """Runs `gpupipe ...` the way a shell would, with the environment a user would have."""

    def __init__(self, stack: Stack, api_key: str, user_id: str, fake_time: FakeTime) -> None:
        self.stack = stack
        self.fake_time = fake_time
        self.environ = {
            "GPUPIPE_ENV": "test",
            "GPUPIPE_API_URL": API_URL,
            "GPUPIPE_API_KEY": api_key,
            "GPUPIPE_USER_ID": user_id,
        }
        self.transport: httpx.BaseTransport = stack.transport()

    def __call__(self, *argv: str, environ: dict[str, str] | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = cli.run(
            list(argv),
            self.environ if environ is None else environ,
            stdout=out,
            stderr=err,
            transport=self.transport,
            storage_transport=self.stack.storage,
            blobs=self.stack.memory.blobs,
            sleep=self.fake_time.sleep,
            clock=self.fake_time.clock,
        )
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def user(stack: Stack) -> tuple[str, str]:
    return stack.new_user("alice")


@pytest.fixture
def gpupipe(stack: Stack, user: tuple[str, str], fake_time: FakeTime) -> Gpupipe:
    return Gpupipe(stack, user[1], user[0], fake_time)


def assert_one_error_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {result.err!r}"
    assert lines[0].startswith("gpupipe: error: ")
    assert "Traceback" not in result.err
    return lines[0]


# --------------------------------------------------------------------------- submit and status
def test_submit_prints_the_job_id_and_status(gpupipe: Gpupipe, stack: Stack) -> None:
    result = gpupipe("submit", "a red fox", *SMALL)

    assert result.code == 0, result.err
    job_id, status = result.out.split()
    assert status == "queued"
    assert stack.ledger.require(job_id).input["prompt"] == "a red fox"


def test_submit_json_maps_every_option_onto_the_request(gpupipe: Gpupipe) -> None:
    result = gpupipe(
        "submit",
        "a lighthouse",
        "--json",
        *SMALL,
        "--guidance",
        "5.5",
        "--num-images",
        "2",
        "--seed",
        "42",
        "--negative",
        "blurry",
        "--scheduler",
        "euler",
        "--format",
        "webp",
        "--metadata",
        "order=17",
        "--metadata",
        "team=red",
    )

    assert result.code == 0, result.err
    job = result.json()
    assert job["status"] == "queued"
    assert job["input"] == {
        **job["input"],
        "prompt": "a lighthouse",
        "width": 64,
        "height": 64,
        "num_inference_steps": 2,
        "guidance_scale": 5.5,
        "num_images": 2,
        "seed": 42,
        "negative_prompt": "blurry",
        "scheduler": "euler",
        "output_format": "webp",
    }
    assert job["metadata"] == {"order": "17", "team": "red"}


def test_json_flag_works_before_the_command_too(gpupipe: Gpupipe) -> None:
    result = gpupipe("--json", "submit", "early flag", *SMALL)

    assert result.code == 0, result.err
    assert result.json()["status"] == "queued"


def test_submit_with_an_idempotency_key_returns_the_same_job(gpupipe: Gpupipe) -> None:
    first = gpupipe("submit", "once", *SMALL, "--idempotency-key", "k-1", "--json").json()
    again = gpupipe("submit", "once", *SMALL, "--idempotency-key", "k-1", "--json").json()
    clash = gpupipe("submit", "other", *SMALL, "--idempotency-key", "k-1")

    assert again["id"] == first["id"]
    assert clash.code == 8
    assert "Idempotency-Key" in assert_one_error_line(clash)


def test_invalid_request_exits_2_with_the_api_message_and_fields(gpupipe: Gpupipe) -> None:
    result = gpupipe("submit", "x", "--width", "65", "--num-images", "9")

    assert result.code == 2
    line = assert_one_error_line(result)
    assert "width" in line and "num_images" in line
    assert "multiple of 8" in line
    assert result.out == ""


def test_status_shows_a_readable_job_and_json_parses(gpupipe: Gpupipe, stack: Stack) -> None:
    job_id = gpupipe("submit", "status check", *SMALL, "--seed", "5", "--json").json()["id"]
    stack.start(job_id, progress=0.4)

    human = gpupipe("status", job_id)
    as_json = gpupipe("status", job_id, "--json")

    assert human.code == 0
    assert f"id         {job_id}" in human.out
    assert "running (40%)" in human.out
    assert "64x64, steps 2, guidance 7.5, seed 5" in human.out
    assert as_json.json()["progress"] == 0.4


def test_status_of_an_unknown_job_exits_3(gpupipe: Gpupipe) -> None:
    result = gpupipe("status", "job_missing")

    assert result.code == 3
    assert "not found" in assert_one_error_line(result)


def test_a_bad_key_exits_4(gpupipe: Gpupipe) -> None:
    result = gpupipe("ls", "--api-key", "gp_aaaaaaaaaaaa_" + "z" * 40)

    assert result.code == 4
    assert_one_error_line(result)


def test_rate_limited_exits_5_and_says_when_to_retry(stack: Stack, fake_time: FakeTime) -> None:
    user_id, key = stack.new_user("busy", max_concurrent_jobs=1)
    gpupipe = Gpupipe(stack, key, user_id, fake_time)
    assert gpupipe("submit", "one", *SMALL).code == 0

    result = gpupipe("submit", "two", *SMALL)

    assert result.code == 5
    line = assert_one_error_line(result)
    assert "concurrency limit" in line and "retry in 10s" in line


def test_an_unreachable_api_exits_6(gpupipe: Gpupipe) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    gpupipe.transport = httpx.MockTransport(refuse)
    result = gpupipe("status", "job_1")

    assert result.code == 6
    assert "cannot reach the gpupipe API at http://api.test" in assert_one_error_line(result)


def test_missing_configuration_is_a_usage_error(gpupipe: Gpupipe) -> None:
    result = gpupipe("ls", environ={})

    assert result.code == 2
    assert "GPUPIPE_API_URL" in assert_one_error_line(result)


def test_flags_override_the_environment(gpupipe: Gpupipe, user: tuple[str, str]) -> None:
    environ = {"GPUPIPE_API_URL": "http://elsewhere.invalid", "GPUPIPE_API_KEY": "gp_wrong"}

    result = gpupipe("ls", "--api-url", API_URL, "--api-key", user[1], environ=environ)

    assert result.code == 0, result.err


def test_argparse_errors_exit_2(gpupipe: Gpupipe) -> None:
    assert gpupipe("frobnicate").code == 2
    assert gpupipe("submit").code == 2
    assert gpupipe("ls", "--limit", "0").code == 2
    assert gpupipe("submit", "x", "--metadata", "novalue").code == 2


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["--help"], {}) == 0

    text = capsys.readouterr().out
    for line in ("0  success", "3  not found", "4  authentication", "5  rate limited", "6  the API", "7  timed out"):
        assert line in text


# --------------------------------------------------------------------------- waiting
def test_submit_wait_out_shows_progress_and_downloads(
    gpupipe: Gpupipe, stack: Stack, fake_time: FakeTime, tmp_path: Path
) -> None:
    def job_id() -> str:
        (job,) = stack.memory.documents.query("jobs").documents
        return job.id

    fake_time.on_sleep = [lambda: stack.start(job_id(), progress=0.5), lambda: stack.succeed(job_id())]

    result = gpupipe("submit", "wait for me", *SMALL, "--out", str(tmp_path), "--json")

    assert result.code == 0, result.err
    job = result.json()
    assert job["status"] == "succeeded"
    assert job["files"] == [str(tmp_path / f"{job['id']}-0.png")]
    assert Path(job["files"][0]).read_bytes().startswith(b"\x89PNG")
    # Not a terminal: one progress line per change on stderr.
    assert f"{job['id']}: queued 0%" in result.err
    assert f"{job['id']}: running 50%" in result.err
    assert f"{job['id']}: succeeded 100%" in result.err


def test_wait_exits_1_for_a_failed_job_with_the_reason(gpupipe: Gpupipe, stack: Stack) -> None:
    job_id = gpupipe("submit", "doomed", *SMALL, "--json").json()["id"]
    stack.fail(job_id, "model_error", "the model refused")

    result = gpupipe("wait", job_id)

    assert result.code == 1
    assert "error      model_error: the model refused" in result.out
    assert result.err.strip().splitlines()[-1] == f"gpupipe: job {job_id} failed: model_error: the model refused"


def test_wait_exits_1_for_a_cancelled_job(gpupipe: Gpupipe) -> None:
    job_id = gpupipe("submit", "cancel me", *SMALL, "--json").json()["id"]
    assert gpupipe("cancel", job_id).out.split() == [job_id, "cancelled"]

    result = gpupipe("wait", job_id, "--json")

    assert result.code == 1
    assert result.json()["status"] == "cancelled"


def test_wait_timeout_exits_7(gpupipe: Gpupipe, fake_time: FakeTime) -> None:
    job_id = gpupipe("submit", "forever queued", *SMALL, "--json").json()["id"]

    result = gpupipe("wait", job_id, "--timeout", "20")

    assert result.code == 7
    assert f"job {job_id} not finished after 20s" in result.err
    assert sum(fake_time.sleeps) == pytest.approx(20)


def test_cancel_of_a_finished_job_exits_8(gpupipe: Gpupipe, stack: Stack) -> None:
    job_id = gpupipe("submit", "done already", *SMALL, "--json").json()["id"]
    stack.succeed(job_id)

    result = gpupipe("cancel", job_id)

    assert result.code == 8
    assert "already succeeded" in assert_one_error_line(result)


# --------------------------------------------------------------------------- listing and downloads
def test_ls_prints_a_table_newest_first_and_respects_limit(gpupipe: Gpupipe, stack: Stack) -> None:
    ids = [gpupipe("submit", f"prompt number {i}", *SMALL, "--json").json()["id"] for i in range(3)]
    stack.succeed(ids[0])

    table = gpupipe("ls")
    limited = gpupipe("ls", "--limit", "2", "--json")
    queued = gpupipe("ls", "--status", "queued", "--json")

    assert table.code == 0
    header, *rows = table.out.splitlines()
    assert header.split() == ["ID", "STATUS", "PROGRESS", "CREATED", "SIZE", "PROMPT"]
    assert [row.split()[0] for row in rows] == ids[::-1]
    assert rows[-1].split()[1:3] == ["succeeded", "100%"]
    assert rows[0].split()[1] == "queued" and rows[0].endswith("prompt number 2")
    assert header.index("STATUS") == rows[0].index("queued"), "columns line up"
    assert [j["id"] for j in limited.json()["jobs"]] == ids[::-1][:2]
    assert [j["id"] for j in queued.json()["jobs"]] == ids[:0:-1]


def test_ls_with_no_jobs_says_so(gpupipe: Gpupipe) -> None:
    assert gpupipe("ls").out.strip() == "no jobs"
    assert gpupipe("ls", "--json").json() == {"jobs": []}


def test_get_downloads_the_images_of_a_finished_job(gpupipe: Gpupipe, stack: Stack, tmp_path: Path) -> None:
    job_id = gpupipe("submit", "two", *SMALL, "--num-images", "2", "--format", "jpeg", "--json").json()["id"]
    images = stack.succeed(job_id)

    result = gpupipe("get", job_id, "--out", str(tmp_path))

    assert result.code == 0, result.err
    paths = [Path(p) for p in result.out.split()]
    assert [p.name for p in paths] == [f"{job_id}-0.jpg", f"{job_id}-1.jpg"]
    assert [p.read_bytes() for p in paths] == images


def test_get_of_an_unfinished_job_exits_1_and_says_why(gpupipe: Gpupipe, tmp_path: Path) -> None:
    job_id = gpupipe("submit", "later", *SMALL, "--json").json()["id"]

    result = gpupipe("get", job_id, "--out", str(tmp_path))

    assert result.code == 1
    assert f"job {job_id} has no images to download: queued (0%)" in result.err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- account, models, batches
def test_usage_shows_every_figure(gpupipe: Gpupipe, stack: Stack) -> None:
    job_id = gpupipe("submit", "billed", *SMALL, "--json").json()["id"]
    stack.succeed(job_id)

    human = gpupipe("usage")
    as_json = gpupipe("usage", "--json").json()

    assert human.code == 0
    assert as_json["jobs"] == 1 and as_json["images"] == 1
    lines = dict(line.split(None, 1) for line in human.out.splitlines() if not line.startswith(("gpu", "by", "active")))
    assert lines["jobs"].strip() == "1"
    assert "gpu seconds" in human.out and "0.25" in human.out


def test_models_table(gpupipe: Gpupipe, stack: Stack) -> None:
    doc = {"name": "tiny-sd", "active_version": "v1", "history": [], "versions": {"v1": {}}}
    stack.memory.documents.set("models", "tiny-sd", doc)

    human = gpupipe("models")
    as_json = gpupipe("models", "--json").json()

    assert human.out.splitlines()[0].split() == ["NAME", "VERSION", "DEFAULT"]
    assert human.out.splitlines()[1].split() == ["tiny-sd", "v1", "yes"]
    assert as_json == {"models": [{"name": "tiny-sd", "version": "v1", "default": True}]}


def test_batch_upload_then_status(gpupipe: Gpupipe, stack: Stack, user: tuple[str, str], tmp_path: Path) -> None:
    source = tmp_path / "night.jsonl"
    source.write_text('{"prompt": "owl", "width": 64, "height": 64}\n{"prompt": ""}\n')

    uploaded = gpupipe("batch", "upload", str(source), "--json")

    assert uploaded.code == 0, uploaded.err
    info = uploaded.json()
    inbox = stack.settings.names.inbox_bucket
    assert info["uri"] == f"gs://{inbox}/{user[0]}/night.jsonl"
    blob = stack.memory.blobs.stat(inbox, f"{user[0]}/night.jsonl")
    assert blob is not None
    trigger = UploadTrigger(stack.memory.documents, stack.memory.blobs, stack.memory.pubsub, stack.settings)
    trigger.handle(StorageNotification(inbox, blob.name, str(blob.generation), FINALIZE))

    status = gpupipe("batch", "status", info["batch_id"])
    as_json = gpupipe("batch", "status", info["batch_id"], "--json").json()

    assert status.code == 0
    assert "lines      2 (1 invalid)" in status.out
    assert "1 total: 0 succeeded, 0 failed, 0 cancelled, 1 pending" in status.out
    assert as_json["id"] == info["batch_id"] and as_json["status"] == "running"


def test_batch_upload_wait_reports_the_batch_and_fails_on_failed_jobs(
    gpupipe: Gpupipe, stack: Stack, fake_time: FakeTime, tmp_path: Path
) -> None:
    source = tmp_path / "two.jsonl"
    source.write_text('{"prompt": "a", "width": 64, "height": 64}\n{"prompt": "b", "width": 64, "height": 64}\n')
    inbox = stack.settings.names.inbox_bucket
    trigger = UploadTrigger(stack.memory.documents, stack.memory.blobs, stack.memory.pubsub, stack.settings)

    def deliver_upload() -> None:
        (blob,) = stack.memory.blobs.list(inbox)
        trigger.handle(StorageNotification(inbox, blob.name, str(blob.generation), FINALIZE))

    def run_jobs() -> None:
        first, second = sorted(d.id for d in stack.memory.documents.query("jobs").documents)
        stack.succeed(first)
        stack.fail(second)

    fake_time.on_sleep = [deliver_upload, run_jobs]

    result = gpupipe("batch", "upload", str(source), "--wait")

    assert result.code == 1, result.err
    assert "2 total: 1 succeeded, 1 failed, 0 cancelled, 0 pending" in result.out
    assert "completed 2/2 jobs 100%" in result.err


def test_batch_upload_needs_a_user(gpupipe: Gpupipe, tmp_path: Path) -> None:
    source = tmp_path / "p.jsonl"
    source.write_text("{}\n")
    environ = {k: v for k, v in gpupipe.environ.items() if k != "GPUPIPE_USER_ID"}

    missing_user = gpupipe("batch", "upload", str(source), environ=environ)
    missing_file = gpupipe("batch", "upload", str(tmp_path / "absent.jsonl"))

    assert missing_user.code == 2 and "--user" in assert_one_error_line(missing_user)
    assert missing_file.code == 2 and "no such file" in assert_one_error_line(missing_file)


# --------------------------------------------------------------------------- progress display
def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    from client.render import ProgressDisplay
    from client.resources import Job

    stream = io.StringIO()
    display = ProgressDisplay(stream, tty=True, clock=lambda: 0.0)
    base = {"id": "job_1", "input": {}, "outputs": []}
    display.job(Job.from_dict({**base, "status": "running", "progress": 0.5}))
    display.job(Job.from_dict({**base, "status": "succeeded", "progress": 1.0}))
    display.close()

    frames = stream.getvalue().split("\r")
    assert frames[1].startswith("\x1b[Kjob_1  [" + "#" * 15 + "-" * 15 + "]  50%  running")
    assert frames[2].startswith("\x1b[Kjob_1  [" + "#" * 30 + "] 100%  succeeded")
    assert stream.getvalue().endswith("\n")


# --------------------------------------------------------------------------- admin and registry groups
def test_admin_commands_run_with_the_environment_main_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Memory backends come from GPUPIPE_ENV=test in the environment given to `run`, not the process's.
    monkeypatch.delenv("GPUPIPE_ENV", raising=False)

    code = cli.run(["admin", "create-user", "erin", "--json"], {"GPUPIPE_ENV": "test"})

    out = capsys.readouterr().out
    assert code == 0
    created = json.loads(out)
    assert set(created) == {"user_id", "api_key"} and created["api_key"].startswith("gp_")


def test_models_alone_lists_through_the_api_and_with_a_command_runs_the_registry(
    gpupipe: Gpupipe, stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GPUPIPE_ENV", raising=False)
    stack.memory.documents.set("models", "tiny-sd", {"active_version": "v1", "versions": {"v1": {}}})

    listed = gpupipe("models", "--json")
    registry_code = cli.run(["models", "list", "--json"], {"GPUPIPE_ENV": "test"})

    assert listed.code == 0 and listed.json()["models"][0]["name"] == "tiny-sd"
    assert registry_code == 0
    assert json.loads(capsys.readouterr().out) == []  # the registry's own (empty) document store


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["submit", "batch", "models", "admin"]),
        (["models", "--help"], ["{register,promote,rollback,list}", "--api-url"]),
        (["models", "promote", "--help"], ["gpupipe models promote"]),
        (["admin", "--help"], ["create-user", "set-limits"]),
        (["batch", "--help"], ["upload", "status"]),
    ],
)
def test_every_group_has_help(argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(argv, {}) == 0

    text = capsys.readouterr().out
    assert all(word in text for word in expected), text


def test_a_group_without_its_command_is_a_usage_error(gpupipe: Gpupipe) -> None:
    assert gpupipe("batch").code == 2
    assert gpupipe("admin").code == 2
    assert gpupipe("models", "nope").code == 2
