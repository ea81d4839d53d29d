"""Where the worker's model comes from, and which version it is.

In order:
1. `settings.worker.model_path` naming a local folder: loaded from there; its version is
   derived from the files' content (`local-<sha>`), or taken from a `manifest.json` there.
2. `settings.worker.model_path` naming a hub id (`org/name`) outside local/test: loaded with
   `from_pretrained` from the hub in the cloud; its version is `hub:<id>`.
3. Otherwise the active registered version of `settings.worker.model_name`, downloaded once
   into `settings.worker.model_cache_dir` and checked against its manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import NotFoundError
from core.model_registry import MANIFEST, ModelRegistry, build_manifest, content_version
from core.ports import BlobStore, DocumentStore
from core.settings import Environment, Settings
from gpu_worker.errors import ConfigurationError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSource:
    name: str
    version: str
    location: str
    """A local folder, or a hub id when `local` is False."""
    local: bool = True


def local_version(folder: Path) -> str:
    manifest = folder / MANIFEST
    if manifest.is_file():
        version = json.loads(manifest.read_text()).get("version")
        if version:
            return str(version)
    files = build_manifest("local", "local", folder)["files"]
    return "local-" + content_version(files).removeprefix("sha-")


def resolve_model(settings: Settings, documents: DocumentStore, blobs: BlobStore) -> ModelSource:
    worker = settings.worker
    if worker.model_path:
        folder = Path(worker.model_path)
        if folder.is_dir():
            return ModelSource(worker.model_name, local_version(folder), str(folder.resolve()))
        if _HUB_ID.match(worker.model_path) and settings.env not in (Environment.LOCAL, Environment.TEST):
            return ModelSource(worker.model_name, f"hub:{worker.model_path}", worker.model_path, local=False)
        raise ConfigurationError(f"GPUPIPE_WORKER_MODEL_PATH {worker.model_path!r} is not a folder")
    registry = ModelRegistry(documents, blobs, settings.names.models_bucket)
    try:
        version = registry.active(worker.model_name)
    except NotFoundError as exc:
        raise ConfigurationError(
            f"{exc}: register one (`gpupipe models register {worker.model_name} FOLDER`, or "
            "`python -m gpu_worker.tiny_model DIR --register` locally) or set GPUPIPE_WORKER_MODEL_PATH"
        ) from None
    folder = registry.download(version, worker.model_cache_dir)
    return ModelSource(worker.model_name, version.version, str(folder))
