"""An in-process `BlobStore` with Cloud Storage's semantics (generations, preconditions)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from core.ports import AlreadyExists, BlobInfo, BlobStore, NotFound, PreconditionFailed


@dataclass(frozen=True)
class _Object:
    data: bytes
    info: BlobInfo


class MemoryBlobStore(BlobStore):
    """Buckets and objects in a dict, guarded by one lock.

    Like Cloud Storage, writing into a bucket that was never created raises `NotFound`, and
    every write gets a new, strictly increasing generation. `url()` cannot give a URL another
    process could fetch, so it returns `memory://<bucket>/<name>`; `read_url()` resolves such a
    URL back to the bytes for tests that want to "fetch" it.
    """

    URL_SCHEME = "memory://"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, _Object]] = {}
        self._generations = itertools.count(1_700_000_000_000_000)

    def ensure_bucket(self, bucket: str, *, versioning: bool = False) -> None:
        with self._lock:
            self._buckets.setdefault(bucket, {})

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        if_generation_match: int | None = None,
    ) -> BlobInfo:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"blob data must be bytes, got {type(data).__name__}")
        if not name:
            raise ValueError("blob name must not be empty")
        with self._lock:
            objects = self._objects(bucket)
            current = objects.get(name)
            if if_generation_match == 0 and current is not None:
                raise AlreadyExists(f"gs://{bucket}/{name} already exists")
            if if_generation_match not in (None, 0) and (
                current is None or current.info.generation != if_generation_match
            ):
                live = current.info.generation if current else None
                raise PreconditionFailed(
                    f"gs://{bucket}/{name}: generation {if_generation_match} does not match the live one ({live})"
                )
            info = BlobInfo(
                bucket=bucket,
                name=name,
                size=len(data),
                generation=next(self._generations),
                content_type=content_type,
                metadata=dict(metadata or {}),
            )
            objects[name] = _Object(bytes(data), info)
            return _copy(info)

    def read(self, bucket: str, name: str, *, max_bytes: int | None = None) -> bytes:
        with self._lock:
            obj = self._objects(bucket).get(name)
        if obj is None:
            raise NotFound(f"gs://{bucket}/{name} not found")
        return obj.data if max_bytes is None else obj.data[:max_bytes]

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        with self._lock:
            obj = self._buckets.get(bucket, {}).get(name)
        return _copy(obj.info) if obj else None

    def list(self, bucket: str, prefix: str = "") -> list[BlobInfo]:
        with self._lock:
            objects = list(self._objects(bucket).values())
        return sorted((_copy(o.info) for o in objects if o.info.name.startswith(prefix)), key=lambda i: i.name)

    def delete(self, bucket: str, name: str) -> None:
        with self._lock:
            self._buckets.get(bucket, {}).pop(name, None)

    def url(self, bucket: str, name: str, *, ttl_seconds: int = 3600) -> str:
        """`memory://<bucket>/<name>`: nothing outside this process could fetch a real URL."""
        return f"{self.URL_SCHEME}{bucket}/{name}"

    def read_url(self, url: str) -> bytes:
        """The bytes behind a URL from `url()` (what a client's GET would return)."""
        if not url.startswith(self.URL_SCHEME):
            raise ValueError(f"not a memory blob URL: {url!r}")
        bucket, _, name = url.removeprefix(self.URL_SCHEME).partition("/")
        return self.read(bucket, name)

    def _objects(self, bucket: str) -> dict[str, _Object]:
        try:
            return self._buckets[bucket]
        except KeyError:
            raise NotFound(f"bucket {bucket} not found") from None


def _copy(info: BlobInfo) -> BlobInfo:
    return BlobInfo(
        bucket=info.bucket,
        name=info.name,
        size=info.size,
        generation=info.generation,
        content_type=info.content_type,
        metadata=dict(info.metadata),
    )
