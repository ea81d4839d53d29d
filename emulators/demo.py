"""`python -m emulators.demo` (`make demo`): show gpupipe working against the running local stack.

It submits a few prompts over HTTP with the SDK, uploads a JSON-lines file with the real
`gcloud storage cp` (one of its lines is invalid on purpose), shows the live progress of every
job, saves the images under `out/http/` and `out/batch/`, prints the batch's errors.jsonl and
ends with how to use the stack yourself. The stack stays up (`make down` stops it).

Exit codes: 0 every job succeeded and the bad line was reported; 1 something did not (the
message says what); 3 the stack is not up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from client.errors import GpupipeError, NotFound
from client.resources import Batch, Job
from client.sdk import Client
from core.settings import Settings, SettingsError
from emulators.errors import SuiteError
from emulators.stack import RunningStack

EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3

HTTP_PROMPTS = (
    {"prompt": "a lighthouse on a cliff at dusk, oil painting", "seed": 1},
    {"prompt": "a red fox in the snow, watercolor", "seed": 2},
    {"prompt": "a city street at night with neon lights", "seed": 3, "num_images": 2},
)
BATCH_LINES: tuple[dict[str, Any], ...] = (
    {"prompt": "mountains and a lake at sunrise", "seed": 11},
    {"prompt": "a bowl of fruit on a table", "seed": 12},
    {"prompt": "a castle in the forest", "width": 100, "seed": 13},  # invalid on purpose: not a multiple of 8
    {"prompt": "a robot and a dragon, digital art", "seed": 14, "output_format": "webp"},
)
SIZE = {"width": 64, "height": 64, "num_inference_steps": 20}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", help="the stack's state directory (default: GPUPIPE_STATE_DIR or .gpupipe)")
    parser.add_argument("--out", default="out", help="where to save the images (default: out/)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every job (default 300)")
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        settings = Settings.from_env(env)
        state_dir = Path(args.state_dir or settings.emulators.state_dir)
        stack = RunningStack.load(state_dir)
    except (SettingsError, SuiteError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if stack is None or not stack.is_running():
        why = "nothing recorded" if stack is None else "partly down: " + ", ".join(stack.dead_processes())
        print(f"demo: the local stack is not up ({why}); start it with `make up`", file=sys.stderr)
        return EXIT_NOT_RUNNING
    demo = Demo(stack, Path(args.out), env, sys.stdout, tty=sys.stdout.isatty(), timeout=args.timeout)
    try:
        return demo.run()
    except (GpupipeError, DemoFailed) as exc:
        print(f"\ndemo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ndemo: interrupted (the stack is still up; `make down` stops it)", file=sys.stderr)
        return 130


class DemoFailed(Exception):
    """A step of the demo did not work; the message says which."""


@dataclass
class Row:
    kind: str
    job_id: str
    prompt: str
    job: Job | None = None


class Demo:
    def __init__(
        self, stack: RunningStack, out: Path, environ: Mapping[str, str], stream: TextIO, *, tty: bool, timeout: float
    ) -> None:
        self.stack = stack
        self.out = out
        self.env = {**environ, **stack.env()}
        self.stream = stream
        self.tty = tty
        self.timeout = timeout
        self.client = Client(stack.api_url, stack.user.api_key)
        self._drawn_lines = 0
        self._printed: dict[str, tuple[str, int]] = {}

    def say(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def run(self) -> int:
        with self.client:
            self.say(f"gpupipe demo against {self.stack.api_url} as user {self.stack.user.user_id}")
            rows = self._submit_over_http()
            upload_uri, batch_id = self._upload_batch()
            batch = self._follow(rows, batch_id)
            saved = self._save_images(rows)
            errors = self._show_batch_errors(batch)
            usage = self.client.usage()
            self.say(f"\nusage of {self.stack.user.user_id}: {usage.jobs} jobs, {usage.images} images")
            self._print_instructions(upload_uri)
            failed = [r for r in rows if r.job is None or not r.job.succeeded]
            if failed:
                raise DemoFailed(f"{len(failed)} jobs did not succeed: " + ", ".join(r.job_id for r in failed))
            if not errors:
                raise DemoFailed("the invalid line of the batch was not reported in errors.jsonl")
            self.say(f"\ndone: {saved} images under {self.out}/")
            return 0

    # ------------------------------------------------------------------ steps
    def _submit_over_http(self) -> list[Row]:
        self.say(f"\n1. submitting {len(HTTP_PROMPTS)} jobs over HTTP (POST {self.stack.api_url}/v1/jobs)")
        rows = []
        for request in HTTP_PROMPTS:
            job = self.client.submit({**SIZE, **request, "metadata": {"source": "demo"}})
            rows.append(Row("http", job.id, job.prompt, job))
            self.say(f"   {job.id}  {job.status:<9} {job.prompt}")
        return rows

    def _upload_batch(self) -> tuple[str, str]:
        names = self.stack.settings.names
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        folder = self.stack.state_dir / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / f"prompts-{stamp}.jsonl"
        source.write_text("".join(json.dumps({**SIZE, **line}) + "\n" for line in BATCH_LINES), encoding="utf-8")
        uri = f"gs://{names.inbox_bucket}/{self.stack.user.user_id}/demo-{stamp}.jsonl"
        self.say(f"\n2. uploading {len(BATCH_LINES)} prompts (line 3 is invalid on purpose) with the real gcloud CLI:")
        self.say(f"   gcloud storage cp {_relative(source)} {uri}")
        gcloud = shutil.which("gcloud", path=self.env.get("PATH"))
        if gcloud is None:
            raise DemoFailed("gcloud is not on PATH; install the Google Cloud CLI to upload with it")
        done = subprocess.run(
            [gcloud, "storage", "cp", str(source), uri], env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise DemoFailed(f"gcloud storage cp failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        # The batch id is derived from bucket, object and generation, exactly as the trigger derives it.
        from core.batches import batch_id_for

        object_name = uri.removeprefix(f"gs://{names.inbox_bucket}/")
        info = self.stack.suite.backends.blobs.stat(names.inbox_bucket, object_name)
        if info is None:
            raise DemoFailed(f"{uri} is not in the inbox after gcloud storage cp")
        batch_id = batch_id_for(names.inbox_bucket, object_name, info.generation)
        self.say(f"   generation {info.generation} -> batch {batch_id} (the on_upload function makes the jobs)")
        return uri, batch_id

    def _follow(self, rows: list[Row], batch_id: str) -> Batch:
        self.say("\n3. live progress of every job")
        deadline = time.monotonic() + self.timeout
        batch: Batch | None = None
        while True:
            for row in rows:
                if row.job is None or not row.job.terminal:
                    row.job = self.client.get(row.job_id)
            if batch is None or not batch.terminal:
                try:
                    batch = self.client.batch(batch_id)
                except NotFound:
                    batch = None
            if batch is not None:
                self._add_batch_jobs(rows, batch)
            self._draw(rows, batch)
            if batch is not None and batch.terminal and all(r.job is not None and r.job.terminal for r in rows):
                self._end_drawing()
                return batch
            if time.monotonic() > deadline:
                self._end_drawing()
                waiting = [r.job_id for r in rows if r.job is None or not r.job.terminal]
                raise DemoFailed(
                    f"not finished after {self.timeout:.0f} s: {', '.join(waiting) or 'the batch'}; "
                    f"see {_relative(self.stack.state_dir / 'logs')}/"
                )
            time.sleep(0.5)

    def _add_batch_jobs(self, rows: list[Row], batch: Batch) -> None:
        known = {r.job_id for r in rows}
        found = sum(1 for r in rows if r.kind == "batch")
        if found >= batch.jobs.total:
            return
        # Newest first: the batch's jobs are among the first pages.
        for job in self.client.iter_jobs(page_size=50):
            if job.batch_id == batch.id and job.id not in known:
                rows.append(Row("batch", job.id, job.prompt, job))
                found += 1
                if found >= batch.jobs.total:
                    return

    def _save_images(self, rows: list[Row]) -> int:
        self.say(f"\n4. saving the images under {self.out}/")
        count = 0
        for row in rows:
            if row.job is None or not row.job.succeeded:
                continue
            for path in self.client.download(row.job, self.out / row.kind):
                self.say(f"   {path}")
                count += 1
        return count

    def _show_batch_errors(self, batch: Batch) -> list[str]:
        self.say(f"\n5. batch {batch.id}: {batch.status}, {batch.lines} lines, {batch.invalid_lines} invalid")
        if not batch.errors_uri:
            return []
        bucket, _, name = batch.errors_uri.removeprefix("gs://").partition("/")
        text = self.stack.suite.backends.blobs.read(bucket, name).decode("utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        self.say(f"   {batch.errors_uri}:")
        for line in lines:
            self.say(f"   {line}")
        return lines

    def _print_instructions(self, upload_uri: str) -> None:
        s = self.stack
        env_file = _relative(s.state_dir / "local.env")
        inbox = f"gs://{s.settings.names.inbox_bucket}/{s.user.user_id}"
        body = json.dumps({"prompt": "a red fox in the snow", "width": 64, "height": 64})
        self.say(
            "\n"
            "The stack is still up. Use it yourself:\n"
            f"  API URL      {s.api_url}\n"
            f"  API key      {s.user.api_key}   (user {s.user.user_id})\n"
            f"  environment  source {env_file}   (sets GPUPIPE_API_URL, GPUPIPE_API_KEY, the emulator hosts, gcloud)\n"
            "\n"
            "  curl:\n"
            f"    curl -s -X POST {s.api_url}/v1/jobs -H 'Authorization: Bearer {s.user.api_key}' \\\n"
            f"         -H 'Content-Type: application/json' -d {shlex.quote(body)}\n"
            f"    curl -s {s.api_url}/v1/jobs/JOB_ID -H 'Authorization: Bearer {s.user.api_key}'\n"
            "  CLI:\n"
            f"    source {env_file}\n"
            "    .venv/bin/gpupipe submit 'a red fox in the snow' --width 64 --height 64 --out out/\n"
            "    .venv/bin/gpupipe ls;  .venv/bin/gpupipe usage\n"
            "  upload a JSON-lines file (one job per line) with gcloud or gsutil:\n"
            f"    source {env_file}\n"
            f"    gcloud storage cp prompts.jsonl {inbox}/prompts.jsonl\n"
            f"    gsutil cp prompts.jsonl {inbox}/prompts.jsonl\n"
            "\n"
            f"  logs: {_relative(s.state_dir / 'logs')}/    status: make status    stop: make down"
        )

    # ------------------------------------------------------------------ live display
    def _draw(self, rows: list[Row], batch: Batch | None) -> None:
        lines = [_row_line(row) for row in rows]
        if batch is None:
            lines.append("upload  waiting for the upload trigger ...")
        else:
            c = batch.jobs
            lines.append(
                f"upload  {batch.id}  {batch.status:<9} {c.total - c.pending}/{c.total} jobs done, "
                f"{batch.invalid_lines} invalid line(s)"
            )
        if self.tty:
            if self._drawn_lines:
                self.stream.write(f"\x1b[{self._drawn_lines}F")
            self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.stream.flush()
            self._drawn_lines = len(lines)
            return
        # Not a terminal (make's output in a log): a line per change of status or tenth of progress.
        for row, line in zip(rows, lines, strict=False):
            job = row.job
            key = (job.status, int(job.progress * 10)) if job else ("?", 0)
            if self._printed.get(row.job_id) != key:
                self._printed[row.job_id] = key
                self.say(line)
        if batch is not None and self._printed.get(batch.id) != (batch.status, batch.jobs.pending):
            self._printed[batch.id] = (batch.status, batch.jobs.pending)
            self.say(lines[-1])

    def _end_drawing(self) -> None:
        self._drawn_lines = 0


def _row_line(row: Row) -> str:
    job = row.job
    status = job.status if job else "?"
    progress = job.progress if job else 0.0
    filled = round(20 * min(max(progress, 0.0), 1.0))
    bar = "#" * filled + "." * (20 - filled)
    prompt = row.prompt if len(row.prompt) <= 40 else row.prompt[:37] + "..."
    return f"{row.kind:<6}  {row.job_id}  {status:<9} [{bar}] {progress * 100:>3.0f}%  {prompt}"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
