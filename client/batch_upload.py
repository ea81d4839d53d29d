"""Batch files go to the inbox bucket directly, not through the API; the upload trigger makes
a batch of each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from client.errors import NetworkError

if TYPE_CHECKING:
    from core.ports import BlobStore
    from core.settings import Settings


@dataclass(frozen=True)
class BatchUpload:
    """A file placed in the inbox bucket, and the batch it becomes."""

    batch_id: str
    bucket: str
    name: str
    generation: int

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def upload_batch_file(
    path: str | os.PathLike[str],
    user_id: str,
    *,
    settings: Settings | None = None,
    bucket: str | None = None,
    blobs: BlobStore | None = None,
    name: str | None = None,
) -> BatchUpload:
    """Write a JSON-lines file to `gs://<inbox>/<user_id>/<name>.jsonl`, as `gcloud storage cp`
    would, and say which batch it becomes.

    This goes to storage directly, not through the API: it needs storage credentials (or the
    emulator), not an API key. `settings` names the inbox bucket and the storage backend;
    `bucket` and `blobs` override them. `name` defaults to the file's name without `.jsonl`.
    The batch id is derived from bucket, object name and the new generation exactly as the
    upload trigger derives it. Raises `ValueError` or `OSError` for a bad user id or file."""
    from core.batches import batch_id_for
    from core.users import USER_ID_PATTERN

    if not USER_ID_PATTERN.match(user_id):
        raise ValueError(f"user id {user_id!r} is not valid: lowercase letters, digits and '-', 2 to 63 of them")
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    data = source.read_bytes()
    if settings is not None and len(data) > settings.request_limits.max_upload_bytes:
        raise ValueError(
            f"{source} is {len(data)} bytes; uploads are limited to {settings.request_limits.max_upload_bytes}"
        )
    target_bucket = bucket or (settings.names.inbox_bucket if settings is not None else None)
    if target_bucket is None:
        raise ValueError("uploading a batch needs settings or a bucket")
    if blobs is None:
        if settings is None:
            raise ValueError("uploading a batch needs settings (or a blob store) to reach storage")
        from adapters.bootstrap import bootstrap

        blobs = bootstrap(settings).blobs
    stem = name or source.name.removesuffix(".jsonl")
    object_name = f"{user_id}/{stem}.jsonl"
    from core.ports import AdapterError

    try:
        info = blobs.write(target_bucket, object_name, data, content_type="application/x-ndjson")
    except AdapterError as exc:
        raise NetworkError(f"cannot upload to gs://{target_bucket}/{object_name}: {exc}") from exc
    return BatchUpload(
        batch_id=batch_id_for(target_bucket, object_name, info.generation),
        bucket=target_bucket,
        name=object_name,
        generation=info.generation,
    )
