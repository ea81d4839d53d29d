"""`BlobStore` on google-cloud-storage, for Cloud Storage and fake-gcs-server alike."""

from __future__ import annotations

import datetime as dt
import functools
import urllib.parse
from collections.abc import Mapping
from typing import Any

import google.auth
import google.auth.credentials
import google.auth.transport.requests
import google.cloud.storage as storage
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from adapters.gcp.errors import bounded_retry, translated
from core.ports import AlreadyExists, BlobInfo, BlobStore, PreconditionFailed

# google-cloud-storage sends objects up to this size in one multipart request; larger ones
# go resumable, where fake-gcs-server ignores `ifGenerationMatch` (an upstream bug).
_SINGLE_REQUEST_MAX_BYTES = 8 * 1024 * 1024
_MAX_SIGNED_URL_TTL = 7 * 24 * 3600  # V4 signatures are valid for at most seven days


def _with_scheme(url: str) -> str:
    return (url if "://" in url else f"http://{url}").rstrip("/")


class GcsBlobStore(BlobStore):
    """Objects in Cloud Storage.

    `endpoint` (for example the `STORAGE_EMULATOR_HOST` value, with or without `http://`)
    points the client at an emulator with anonymous credentials; None means real GCS with the
    application default credentials. `public_url` decides what `url()` returns: with it, the
    object's unsigned JSON-API media link under that base
    (`{public_url}/download/storage/v1/b/{bucket}/o/{name}?alt=media`, which fake-gcs-server
    serves); without it, a V4 signed URL (on Cloud Run and Cloud Functions, where credentials
    cannot sign locally, it is signed through the IAM signBlob API, so the service account
    needs `roles/iam.serviceAccountTokenCreator` on itself). Every call is bounded by
    `timeout` seconds, retries included.
    """

    def __init__(
        self,
        project_id: str,
        *,
        endpoint: str | None = None,
        public_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._project_id = project_id
        self._endpoint = _with_scheme(endpoint) if endpoint else None
        self._public_url = _with_scheme(public_url) if public_url else None
        self._timeout = timeout

    @functools.cached_property
    def _credentials(self) -> google.auth.credentials.Credentials:
        if self._endpoint is not None:
            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
        return credentials

    @functools.cached_property
    def _client(self) -> storage.Client:
        options = {"api_endpoint": self._endpoint} if self._endpoint is not None else None
        return storage.Client(project=self._project_id, credentials=self._credentials, client_options=options)

    def _call_options(self) -> dict[str, Any]:
        return {"timeout": self._timeout, "retry": bounded_retry(self._timeout)}

    # ------------------------------------------------------------------ BlobStore
    def ensure_bucket(self, bucket: str, *, versioning: bool = False) -> None:
        with translated(f"create bucket {bucket}"):
            handle = self._client.bucket(bucket)
            handle.versioning_enabled = versioning
            try:
                self._client.create_bucket(handle, **self._call_options())
            except gexc.Conflict:
                pass  # it exists (ours, or someone else's: the next write will tell)

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
        uri = f"gs://{bucket}/{name}"
        if if_generation_match == 0 and len(data) > _SINGLE_REQUEST_MAX_BYTES and self.stat(bucket, name):
            raise AlreadyExists(f"{uri} already exists")
        blob = self._client.bucket(bucket).blob(name)
        blob.metadata = dict(metadata) if metadata else None
        # Without a precondition a retried upload could overwrite a concurrent writer: no retry.
        retry = bounded_retry(self._timeout) if if_generation_match is not None else None
        try:
            with translated(f"write {uri}"):
                blob.upload_from_string(
                    bytes(data),
                    content_type=content_type,
                    if_generation_match=if_generation_match,
                    timeout=self._timeout,
                    retry=retry,
                )
        except PreconditionFailed as exc:
            if if_generation_match == 0:
                raise AlreadyExists(f"{uri} already exists") from exc
            raise
        return _info(blob)

    def read(self, bucket: str, name: str, *, max_bytes: int | None = None) -> bytes:
        uri = f"gs://{bucket}/{name}"
        blob = self._client.bucket(bucket).blob(name)
        with translated(f"read {uri}"):
            if max_bytes is None:
                return bytes(blob.download_as_bytes(**self._call_options()))
            if max_bytes <= 0:
                blob.reload(**self._call_options())  # NotFound when absent
                return b""
            return bytes(blob.download_as_bytes(start=0, end=max_bytes - 1, **self._call_options()))

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        with translated(f"stat gs://{bucket}/{name}"):
            try:
                blob = self._client.bucket(bucket).get_blob(name, **self._call_options())
            except gexc.NotFound:
                return None  # the bucket is missing
        return _info(blob) if blob is not None else None

    def list(self, bucket: str, prefix: str = "") -> list[BlobInfo]:
        with translated(f"list gs://{bucket}/{prefix}"):
            blobs = list(self._client.list_blobs(bucket, prefix=prefix or None, **self._call_options()))
        return sorted((_info(b) for b in blobs), key=lambda i: i.name)

    def delete(self, bucket: str, name: str) -> None:
        with translated(f"delete gs://{bucket}/{name}"):
            try:
                self._client.bucket(bucket).delete_blob(name, **self._call_options())
            except gexc.NotFound:
                pass

    def url(self, bucket: str, name: str, *, ttl_seconds: int = 3600) -> str:
        if self._public_url is not None:
            quoted_bucket, quoted_name = urllib.parse.quote(bucket, safe=""), urllib.parse.quote(name, safe="")
            return f"{self._public_url}/download/storage/v1/b/{quoted_bucket}/o/{quoted_name}?alt=media"
        if not 1 <= ttl_seconds <= _MAX_SIGNED_URL_TTL:
            raise ValueError(f"ttl_seconds must be 1..{_MAX_SIGNED_URL_TTL}, got {ttl_seconds}")
        blob = self._client.bucket(bucket).blob(name)
        credentials = self._credentials
        signer: dict[str, Any] = {}
        if not isinstance(credentials, google.auth.credentials.Signing):
            # Metadata-server credentials hold no private key: sign through IAM signBlob.
            with translated("refresh credentials for URL signing"):
                if not credentials.valid:
                    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
            signer = {
                "service_account_email": getattr(credentials, "service_account_email", None),
                "access_token": credentials.token,
            }
        with translated(f"sign a URL for gs://{bucket}/{name}"):
            return str(
                blob.generate_signed_url(
                    version="v4", expiration=dt.timedelta(seconds=ttl_seconds), method="GET", **signer
                )
            )


def _info(blob: storage.Blob) -> BlobInfo:
    return BlobInfo(
        bucket=blob.bucket.name,
        name=blob.name,
        size=int(blob.size or 0),
        generation=int(blob.generation or 0),
        content_type=blob.content_type,
        metadata=dict(blob.metadata or {}),
    )
