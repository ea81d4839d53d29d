"""BlobStore contract: the same cases against the memory fake, fake-gcs-server and GCS."""

from __future__ import annotations

import pytest

from core.ports import AlreadyExists, NotFound, PreconditionFailed
from tests.contract.conftest import ContractBackend


def test_create_only_write_refuses_a_second_create(backend: ContractBackend) -> None:
    name = backend.blob_name("jobs/0.png")
    first = backend.blobs.create(backend.bucket, name, b"first", content_type="image/png")

    with pytest.raises(AlreadyExists):
        backend.blobs.create(backend.bucket, name, b"second", content_type="image/png")

    assert backend.blobs.read(backend.bucket, name) == b"first"
    assert backend.blobs.stat(backend.bucket, name) == first


def test_create_only_holds_for_objects_above_the_single_request_size(backend: ContractBackend) -> None:
    # Above 8 MiB the client uploads resumably, where fake-gcs-server ignores the precondition.
    name = backend.blob_name("model/unet.safetensors")
    big = b"\x01" * (9 * 1024 * 1024)
    backend.blobs.create(backend.bucket, name, big)

    with pytest.raises(AlreadyExists):
        backend.blobs.create(backend.bucket, name, b"\x02" * len(big))

    assert backend.blobs.read(backend.bucket, name, max_bytes=4) == b"\x01" * 4


def test_generation_precondition_guards_overwrites(backend: ContractBackend) -> None:
    name = backend.blob_name("summary.json")
    first = backend.blobs.write(backend.bucket, name, b"v1")

    with pytest.raises(PreconditionFailed):
        backend.blobs.write(backend.bucket, name, b"v2", if_generation_match=first.generation + 1)
    second = backend.blobs.write(backend.bucket, name, b"v2", if_generation_match=first.generation)

    assert second.generation > first.generation
    assert backend.blobs.read(backend.bucket, name) == b"v2"


def test_write_returns_what_stat_reports(backend: ContractBackend) -> None:
    name = backend.blob_name("with meta.txt")
    written = backend.blobs.write(
        backend.bucket, name, b"hello", content_type="text/plain", metadata={"job_id": "job_1"}
    )

    stat = backend.blobs.stat(backend.bucket, name)

    assert stat == written
    assert (stat.size, stat.content_type, dict(stat.metadata)) == (5, "text/plain", {"job_id": "job_1"})
    assert stat.uri == f"gs://{backend.bucket}/{name}"


def test_list_by_prefix_is_sorted_and_exact(backend: ContractBackend) -> None:
    for name in ("u1/jobs/b/1.png", "u1/jobs/a/0.png", "u1/batches/x/errors.jsonl", "u10/jobs/c/0.png"):
        backend.blobs.write(backend.bucket, backend.blob_name(name), name.encode())

    listed = backend.blobs.list(backend.bucket, backend.blob_name("u1/"))

    assert [b.name for b in listed] == [
        backend.blob_name("u1/batches/x/errors.jsonl"),
        backend.blob_name("u1/jobs/a/0.png"),
        backend.blob_name("u1/jobs/b/1.png"),
    ]
    assert backend.blobs.list(backend.bucket, backend.blob_name("nothing/")) == []


def test_read_stat_and_delete(backend: ContractBackend) -> None:
    name = backend.blob_name("upload.jsonl")
    backend.blobs.write(backend.bucket, name, b"0123456789")

    assert backend.blobs.read(backend.bucket, name, max_bytes=4) == b"0123"
    assert backend.blobs.read(backend.bucket, name, max_bytes=100) == b"0123456789"
    backend.blobs.delete(backend.bucket, name)
    backend.blobs.delete(backend.bucket, name)  # absent: not an error

    assert backend.blobs.stat(backend.bucket, name) is None
    with pytest.raises(NotFound):
        backend.blobs.read(backend.bucket, name)


def test_write_into_a_missing_bucket_is_not_found(backend: ContractBackend) -> None:
    with pytest.raises(NotFound):
        backend.blobs.create(f"{backend.bucket}-missing", "x", b"x")


def test_url_fetches_the_bytes(backend: ContractBackend) -> None:
    name = backend.blob_name("user 1/jobs/j+1/0.png")  # characters that need quoting
    payload = bytes(range(256)) * 4
    backend.blobs.create(backend.bucket, name, payload, content_type="image/png")

    url = backend.blobs.url(backend.bucket, name, ttl_seconds=300)

    assert backend.fetch(url) == payload
