"""What the stack keeps across `down` and `up` in `<state>/persist/` (the emulators keep
everything in memory):

- Firestore (users, keys, jobs, batches, usage, models): exported by the emulator at `stop`
  and imported at `start`;
- the outputs bucket (images, errors.jsonl, summary.json): copied to disk and written back;
- Pub/Sub messages are not kept: jobs still queued or running are published again instead;
- the ports and the demo user, so that a shell that sourced local.env keeps working.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from core.ports import AdapterError, Filter
from emulators.errors import StartupFailed, SuiteError
from emulators.network import HOST
from emulators.running_suite import RunningSuite
from emulators.statefiles import read_json, write_atomically

_PORTS_FILE = "ports.json"
_USER_FILE = "demo-user.json"
_FIRESTORE_DIR = "firestore"
_FIRESTORE_POINTER = "firestore.json"
_OUTPUTS_DIR = "outputs"
_OUTPUTS_INDEX = "index.json"


# --------------------------------------------------------------------------- ports and the demo user
def saved_ports(persist: Path) -> dict[str, Any]:
    """Last run's port per process name (`pubsub`, ..., `api`, `worker-1`); {} when none."""
    return read_json(persist / _PORTS_FILE) or {}


def saved_user(persist: Path) -> dict[str, Any] | None:
    user: dict[str, Any] | None = read_json(persist / _USER_FILE)
    return user


def save_ports_and_user(persist: Path, ports: Mapping[str, int], user: Mapping[str, str]) -> None:
    write_atomically(persist / _PORTS_FILE, json.dumps(dict(ports), indent=2) + "\n")
    write_atomically(persist / _USER_FILE, json.dumps(dict(user)) + "\n")


# --------------------------------------------------------------------------- saving at stop
def save_state(running_suite: RunningSuite, persist: Path) -> list[str]:
    """Export Firestore and copy the outputs bucket to `persist`; warnings on failure."""
    warnings = []
    try:
        _export_firestore(running_suite, persist)
    except (requests.RequestException, SuiteError, OSError) as exc:
        warnings.append(f"Firestore was not saved: {exc}")
    try:
        _snapshot_outputs(running_suite, persist / _OUTPUTS_DIR)
    except (AdapterError, OSError) as exc:
        warnings.append(f"the outputs bucket was not saved: {exc}")
    return warnings


def _export_firestore(running_suite: RunningSuite, persist: Path) -> Path:
    """Ask the Firestore emulator to export everything, then point `firestore.json` at it."""
    exports = persist / _FIRESTORE_DIR
    exports.mkdir(parents=True, exist_ok=True)
    name = "export-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    project = running_suite.settings.project_id
    response = requests.post(
        f"http://{HOST}:{running_suite.ports.firestore}/emulator/v1/projects/{project}:export",
        json={
            "database": f"projects/{project}/databases/(default)",
            "export_directory": str(exports),
            "export_name": name,
        },
        timeout=60,
    )
    if not response.ok:
        raise SuiteError(
            f"the Firestore emulator refused the export: HTTP {response.status_code} {response.text[:200]}"
        )
    metadata = exports / name / f"{name}.overall_export_metadata"
    if not metadata.is_file():
        raise SuiteError(f"the Firestore export wrote no {metadata}")
    write_atomically(persist / _FIRESTORE_POINTER, json.dumps({"metadata": str(metadata)}) + "\n")
    for older in exports.iterdir():
        if older.name != name:
            shutil.rmtree(older, ignore_errors=True)
    return metadata


def _snapshot_outputs(running_suite: RunningSuite, folder: Path) -> int:
    """Copy every object of the outputs bucket to `folder` (replacing the previous copy)."""
    blobs = running_suite.backends.blobs
    bucket = running_suite.settings.names.outputs_bucket
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "objects").mkdir(parents=True)
    index = []
    for number, info in enumerate(blobs.list(bucket)):
        (partial / "objects" / str(number)).write_bytes(blobs.read(bucket, info.name))
        index.append({"file": str(number), "name": info.name, "content_type": info.content_type})
    (partial / _OUTPUTS_INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return len(index)


# --------------------------------------------------------------------------- bringing it back at start
def latest_firestore_export(persist: Path) -> Path | None:
    """The metadata file of the last Firestore export, for the emulator's `--import-data`."""
    pointer = read_json(persist / _FIRESTORE_POINTER)
    if pointer is None:
        return None
    metadata = Path(str(pointer.get("metadata", "")))
    return metadata if metadata.is_file() else None


def restore_outputs(running_suite: RunningSuite, persist: Path) -> int:
    """Write the saved outputs back into the outputs bucket; how many objects."""
    folder = persist / _OUTPUTS_DIR
    index = read_json(folder / _OUTPUTS_INDEX, expect=list)
    if not index:
        return 0
    blobs = running_suite.backends.blobs
    bucket = running_suite.settings.names.outputs_bucket
    try:
        for entry in index:
            data = (folder / "objects" / entry["file"]).read_bytes()
            blobs.write(bucket, entry["name"], data, content_type=entry["content_type"] or "application/octet-stream")
    except (AdapterError, OSError, KeyError) as exc:
        raise StartupFailed(f"could not write the saved outputs back from {folder}: {exc}") from exc
    return len(index)


def republish_unfinished(running_suite: RunningSuite) -> int:
    """Publish a job message again for every job still queued or running: Pub/Sub lost the
    messages with the emulator. The lifecycle guard makes a duplicate harmless."""
    from core import collection_names as c
    from core.job_messages import publish_job
    from core.jobs import Job, JobStatus

    backends = running_suite.backends
    topic = running_suite.settings.names.jobs_topic
    count = 0
    unfinished = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
    for doc in backends.documents.iterate(c.JOBS, where=[Filter("status", "in", unfinished)]):
        job = Job.from_document(doc.id, doc.data)
        publish_job(backends.publisher, topic, job, timeout=10)
        count += 1
    return count
