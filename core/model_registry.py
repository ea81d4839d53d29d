"""The model registry: versions of each model in the models bucket, the active one in Firestore.

A version lives at `gs://<models>/<name>/<version>/` in diffusers layout, with a
`manifest.json` listing every file and its sha256. The manifest is written last and
create-only, so a version is either complete or absent, and never changes once registered.

The collection `models` holds one document per model name:
`{"name", "active_version", "history": [previously active versions, oldest first],
"versions": {version: {"uri", "manifest_sha256", "files", "size_bytes", "registered_at"}}}`.
Promote and roll back change `active_version` in a transaction; workers pin the version they
ran in every job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import collection_names as c
from core.errors import Conflict, GpupipeError, InvalidArgument, NotFoundError
from core.job_request import MODEL_NAME_PATTERN
from core.ports import AlreadyExists, BlobStore, DocumentStore, NotFound, Transaction
from core.timeutil import utcnow

MANIFEST = "manifest.json"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_NAME = re.compile(MODEL_NAME_PATTERN)


class ManifestMismatch(GpupipeError):
    """A downloaded model file does not match its manifest (corrupt or tampered)."""

    code = "model_corrupt"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    uri: str
    manifest_sha256: str
    files: int
    size_bytes: int
    registered_at: dt.datetime | None
    active: bool = False


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(name: str, version: str, folder: Path) -> dict[str, Any]:
    """The manifest of a model folder: every file (relative path) with its sha256 and size."""
    files = {
        path.relative_to(folder).as_posix(): {"sha256": file_digest(path), "size": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.name != MANIFEST
        and not any(p.startswith(".") for p in path.relative_to(folder).parts)
    }
    if "model_index.json" not in files:
        raise InvalidArgument(f"{folder} is not a diffusers pipeline folder: it has no model_index.json")
    return {"name": name, "version": version, "files": files}


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, indent=1).encode()


def content_version(manifest_files: dict[str, Any]) -> str:
    """A version derived from the content: the same files give the same version."""
    canonical = json.dumps({k: v["sha256"] for k, v in manifest_files.items()}, sort_keys=True).encode()
    return "sha-" + hashlib.sha256(canonical).hexdigest()[:12]


class ModelRegistry:
    def __init__(
        self, documents: DocumentStore, blobs: BlobStore, bucket: str, *, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self._documents = documents
        self._blobs = blobs
        self._bucket = bucket
        self._clock = clock

    @property
    def bucket(self) -> str:
        return self._bucket

    def prefix(self, name: str, version: str) -> str:
        return f"{name}/{version}/"

    # ------------------------------------------------------------------ register
    def register(
        self,
        name: str,
        folder: str | Path,
        *,
        version: str | None = None,
        promote: bool = False,
        exist_ok: bool = False,
    ) -> ModelVersion:
        """Upload a diffusers folder as `name/version` and record it. Without `version`, one is
        derived from the content. The first version of a model becomes active; `promote` makes
        this one active. Raises `Conflict` when the version exists with other content (or at
        all, unless `exist_ok`)."""
        if not _NAME.match(name):
            raise InvalidArgument(f"model name must match {MODEL_NAME_PATTERN}, got {name!r}")
        root = Path(folder)
        if not root.is_dir():
            raise InvalidArgument(f"{root} is not a folder")
        manifest = build_manifest(name, version or "", root)
        version = version or content_version(manifest["files"])
        if not VERSION_PATTERN.match(version):
            raise InvalidArgument(f"version must match {VERSION_PATTERN.pattern}, got {version!r}")
        manifest["version"] = version
        body = manifest_bytes(manifest)
        sha = hashlib.sha256(body).hexdigest()
        prefix = self.prefix(name, version)
        existing = self._blobs.stat(self._bucket, prefix + MANIFEST)
        if existing is not None:
            theirs = hashlib.sha256(self._blobs.read(self._bucket, prefix + MANIFEST)).hexdigest()
            if theirs != sha or not exist_ok:
                raise Conflict(
                    f"model {name} version {version} is already registered"
                    + ("" if theirs == sha else " with other content")
                )
        else:
            for rel in manifest["files"]:
                self._blobs.write(self._bucket, prefix + rel, (root / rel).read_bytes())
            try:
                self._blobs.create(self._bucket, prefix + MANIFEST, body, content_type="application/json")
            except AlreadyExists:
                raise Conflict(f"model {name} version {version} was registered concurrently") from None
        entry = {
            "uri": f"gs://{self._bucket}/{prefix}",
            "manifest_sha256": sha,
            "files": len(manifest["files"]),
            "size_bytes": sum(int(f["size"]) for f in manifest["files"].values()),
            "registered_at": self._clock(),
        }

        def record(tx: Transaction) -> None:
            doc = tx.get(c.MODELS, name) or {"name": name, "active_version": None, "history": [], "versions": {}}
            versions = dict(doc.get("versions") or {})
            versions.setdefault(version, entry)
            doc["versions"] = versions
            if promote or not doc.get("active_version"):
                _activate(doc, version)
            tx.set(c.MODELS, name, doc)

        self._documents.transaction(record)
        return self.version(name, version)

    # ------------------------------------------------------------------ promote / roll back
    def promote(self, name: str, version: str) -> ModelVersion:
        """Make `version` the active one; the previous active version can be rolled back to."""

        def run(tx: Transaction) -> None:
            doc = _require(tx.get(c.MODELS, name), name)
            if version not in (doc.get("versions") or {}):
                raise NotFoundError(f"model {name} has no version {version}")
            if doc.get("active_version") != version:
                _activate(doc, version)
                tx.set(c.MODELS, name, doc)

        self._documents.transaction(run)
        return self.version(name, version)

    def rollback(self, name: str) -> ModelVersion:
        """Make the previously active version active again. Raises `Conflict` when there is none."""

        def run(tx: Transaction) -> str:
            doc = _require(tx.get(c.MODELS, name), name)
            history = list(doc.get("history") or [])
            if not history:
                raise Conflict(f"model {name} has no earlier active version to roll back to")
            doc["active_version"] = history.pop()
            doc["history"] = history
            tx.set(c.MODELS, name, doc)
            return str(doc["active_version"])

        return self.version(name, self._documents.transaction(run))

    # ------------------------------------------------------------------ reads
    def active(self, name: str) -> ModelVersion:
        doc = _require(self._documents.get(c.MODELS, name), name)
        if not doc.get("active_version"):
            raise NotFoundError(f"model {name} has no active version")
        return self.version(name, str(doc["active_version"]))

    def version(self, name: str, version: str) -> ModelVersion:
        doc = _require(self._documents.get(c.MODELS, name), name)
        entry = (doc.get("versions") or {}).get(version)
        if entry is None:
            raise NotFoundError(f"model {name} has no version {version}")
        return _model_version(name, version, entry, active=doc.get("active_version") == version)

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every registered version (of one model, or of all), sorted by name then registration time."""
        docs = [d.data | {"name": d.id} for d in self._documents.iterate(c.MODELS)]
        out = []
        for doc in docs:
            if name is not None and doc["name"] != name:
                continue
            for version, entry in (doc.get("versions") or {}).items():
                out.append(_model_version(doc["name"], version, entry, active=doc.get("active_version") == version))
        return sorted(out, key=lambda v: (v.name, v.registered_at or dt.datetime.min.replace(tzinfo=dt.UTC), v.version))

    def manifest(self, version: ModelVersion) -> dict[str, Any]:
        """The version's manifest, checked against the digest recorded at registration."""
        try:
            body = self._blobs.read(self._bucket, self.prefix(version.name, version.version) + MANIFEST)
        except NotFound:
            raise NotFoundError(
                f"model {version.name} version {version.version} has no manifest in the bucket"
            ) from None
        if hashlib.sha256(body).hexdigest() != version.manifest_sha256:
            raise ManifestMismatch(f"the manifest of {version.name} {version.version} does not match the registry")
        manifest: dict[str, Any] = json.loads(body)
        return manifest

    def download(self, version: ModelVersion, cache_dir: str | Path) -> Path:
        """The version as a local folder under `cache_dir/<name>/<version>`, downloading it once.
        Every file is checked against the manifest's sha256 before the folder is moved into
        place, so a folder in the cache is always complete and verified."""
        target = Path(cache_dir) / version.name / version.version
        marker = target / MANIFEST
        if marker.is_file() and hashlib.sha256(marker.read_bytes()).hexdigest() == version.manifest_sha256:
            return target
        manifest = self.manifest(version)
        # A unique staging folder: workers sharing a cache volume may download at the same time.
        staging = target.parent / f".{version.version}.{uuid.uuid4().hex}.partial"
        prefix = self.prefix(version.name, version.version)
        for rel, meta in manifest["files"].items():
            data = self._blobs.read(self._bucket, prefix + rel)
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                shutil.rmtree(staging, ignore_errors=True)
                raise ManifestMismatch(
                    f"{version.name} {version.version}: {rel} does not match its sha256 in the manifest"
                )
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
        if target.exists() and not marker.is_file():
            shutil.rmtree(target, ignore_errors=True)  # an incomplete folder from an older layout
        try:
            staging.rename(target)
        except OSError:
            # Another process put a verified copy in place first.
            shutil.rmtree(staging, ignore_errors=True)
            if not marker.is_file() or hashlib.sha256(marker.read_bytes()).hexdigest() != version.manifest_sha256:
                raise
        return target


def list_models(documents: DocumentStore) -> list[dict[str, Any]]:
    """Every registered model version for `GET /v1/models`: `{"name", "version", "default"}`,
    where `default` marks the active version, the one a job for that model runs on."""
    out = []
    for doc in documents.iterate(c.MODELS):
        active = doc.data.get("active_version")
        for version in sorted(doc.data.get("versions") or {}):
            out.append({"name": doc.id, "version": version, "default": version == active})
    return out


def _activate(doc: dict[str, Any], version: str) -> None:
    previous = doc.get("active_version")
    history = list(doc.get("history") or [])
    if previous and previous != version:
        history.append(previous)
    doc["history"] = history
    doc["active_version"] = version


def _require(doc: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if doc is None:
        raise NotFoundError(f"model {name} is not registered")
    return doc


def _model_version(name: str, version: str, entry: dict[str, Any], *, active: bool) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=version,
        uri=str(entry["uri"]),
        manifest_sha256=str(entry["manifest_sha256"]),
        files=int(entry.get("files", 0)),
        size_bytes=int(entry.get("size_bytes", 0)),
        registered_at=entry.get("registered_at"),
        active=active,
    )
