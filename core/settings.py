"""Typed settings, read once from the environment at start-up.

`Settings.from_env(os.environ)` is the only place in gpupipe that reads environment
variables. `GPUPIPE_ENV` (local | test | staging | prod) selects the defaults; every value
can be overridden by its own variable (named in `ENV_VARS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    STAGING = "staging"
    PROD = "prod"


class SettingsError(ValueError):
    """The environment does not describe a valid configuration; the message names each bad variable."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RequestLimits(_Frozen):
    """Bounds on what one job request may ask for (the API and the upload trigger share them)."""

    max_prompt_chars: int = 2000
    min_size: int = 64
    max_size: int = 1024
    default_size: int = 512
    max_steps: int = 100
    default_steps: int = 25
    max_guidance_scale: float = 30.0
    default_guidance_scale: float = 7.5
    max_images_per_job: int = 4
    max_metadata_keys: int = 16
    max_metadata_bytes: int = 2048
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 5 * 1024 * 1024
    max_upload_lines: int = 1000


class UserLimitDefaults(_Frozen):
    """Limits a new user gets unless an admin sets others."""

    max_concurrent_jobs: int = 8
    daily_images: int = 1000
    requests_per_minute: int = 120


class Names(_Frozen):
    """Concrete resource names (the topology file's logical names with the deployment prefix)."""

    inbox_bucket: str
    outputs_bucket: str
    models_bucket: str
    jobs_topic: str
    jobs_subscription: str
    jobs_dead_topic: str
    jobs_dead_subscription: str
    uploads_topic: str
    uploads_subscription: str
    undeliverable_topic: str
    undeliverable_subscription: str


class WorkerSettings(_Frozen):
    max_batch_size: int = 4
    max_batch_wait_seconds: float = 0.25
    max_outstanding_messages: int = 8
    lease_extension_seconds: int = 60
    shutdown_grace_seconds: float = 30.0
    progress_interval_seconds: float = 1.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    model_cache_dir: str = "/var/cache/gpupipe/models"
    model_name: str = "tiny-sd"
    model_path: str | None = None
    health_port: int = 8081
    health_host: str = "127.0.0.1"
    """Where /healthz and /metrics listen; 0.0.0.0 in a pod whose kubelet probes them over HTTP."""
    exit_when_idle_seconds: float | None = None
    pull_mode: Literal["unary", "streaming"] = "unary"
    """How the worker pulls on GCP and the emulator: a loop of unary Pulls (default; see
    adapters/gcp/pubsub.py for why) or the client library's StreamingPull."""


class RecoverySettings(_Frozen):
    """How accepted jobs are brought back when a delivery was lost (`core.reconciler`).

    A job is redelivered when it stayed `queued` for `queued_after_seconds` (doubling after each
    redelivery, up to 8 times that) or `running` with no heartbeat from its worker for
    `stale_after_seconds`; a job that `max_attempts` workers claimed without finishing is failed.
    """

    interval_seconds: float = Field(default=30.0, gt=0)
    queued_after_seconds: float = Field(default=120.0, gt=0)
    stale_after_seconds: float | None = Field(default=None, gt=0)
    """Default: two lease extensions (a live worker heartbeats every third of one)."""
    max_attempts: int = Field(default=5, ge=1)
    sweep_limit: int = Field(default=50, ge=1)
    stream_stall_seconds: float = Field(default=120.0, gt=0)
    """A worker that received nothing for this long while jobs wait reopens its streaming pull."""
    upload_claim_lease_seconds: float = Field(default=30.0, gt=0)
    """How long an upload ingestion claim lasts without renewal before another delivery takes it over."""


class EmulatorSuiteSettings(_Frozen):
    """Where the local emulator suite (`python -m emulators`) finds its programs and keeps its state."""

    cloud_sdk_root: str | None = Field(
        default=None, description="google-cloud-cli install root; found from `gcloud` on PATH when unset"
    )
    state_dir: str = ".gpupipe"
    storage_https_port: int | None = Field(default=None, description="fake-gcs-server's HTTPS port (for gsutil)")
    startup_timeout_seconds: float = 60.0


class DispatchSettings(_Frozen):
    """How the dispatch function sizes Cloud Run worker executions (functions/dispatch.py)."""

    worker_job: str | None = None
    """Full name of the worker Cloud Run job: projects/P/locations/R/jobs/J."""
    jobs_per_worker: int = Field(default=8, ge=1)
    max_workers: int = Field(default=4, ge=0)
    url: str | None = None
    """The dispatch function's URL; the API nudges it after a submit when set."""


class Settings(_Frozen):
    env: Environment
    project_id: str
    backend: Literal["gcp", "memory"]
    pubsub_emulator_host: str | None = None
    firestore_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    public_storage_url: str | None = Field(
        default=None, description="base URL for fetchable output URLs when not on GCS"
    )
    names: Names
    api_key_pepper: SecretStr
    api_url: str | None = None
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    request_limits: RequestLimits = RequestLimits()
    user_limits: UserLimitDefaults = UserLimitDefaults()
    worker: WorkerSettings = WorkerSettings()
    dispatch: DispatchSettings = DispatchSettings()
    recovery: RecoverySettings = RecoverySettings()
    emulators: EmulatorSuiteSettings = EmulatorSuiteSettings()
    default_model: str = "tiny-sd"
    signed_url_ttl_seconds: int = 3600

    @property
    def uses_emulators(self) -> bool:
        return any((self.pubsub_emulator_host, self.firestore_emulator_host, self.storage_emulator_host))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build and validate settings; raise `SettingsError` naming every bad variable."""
        raw_env = environ.get("GPUPIPE_ENV", "local")
        try:
            env = Environment(raw_env)
        except ValueError:
            allowed = ", ".join(e.value for e in Environment)
            raise SettingsError(f"GPUPIPE_ENV must be one of {allowed}, got {raw_env!r}") from None
        data = _defaults_for(env)
        for var, path in ENV_VARS.items():
            if var in environ and environ[var] != "":
                _put(data, path, environ[var])
        data["env"] = env
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None


def resource_names(prefix: str) -> dict[str, str]:
    """The concrete names for a deployment prefix, matching topology.yaml and Terraform."""
    return {
        "inbox_bucket": f"{prefix}-inbox",
        "outputs_bucket": f"{prefix}-outputs",
        "models_bucket": f"{prefix}-models",
        "jobs_topic": f"{prefix}-jobs",
        "jobs_subscription": f"{prefix}-jobs-worker",
        "jobs_dead_topic": f"{prefix}-jobs-dead",
        "jobs_dead_subscription": f"{prefix}-jobs-dead-handler",
        "uploads_topic": f"{prefix}-uploads",
        "uploads_subscription": f"{prefix}-uploads-handler",
        "undeliverable_topic": f"{prefix}-undeliverable",
        "undeliverable_subscription": f"{prefix}-undeliverable-hold",
    }


# Environment variable -> dotted path in the settings tree.
ENV_VARS: dict[str, str] = {
    "GOOGLE_CLOUD_PROJECT": "project_id",
    "GPUPIPE_BACKEND": "backend",
    "PUBSUB_EMULATOR_HOST": "pubsub_emulator_host",
    "FIRESTORE_EMULATOR_HOST": "firestore_emulator_host",
    "STORAGE_EMULATOR_HOST": "storage_emulator_host",
    "GPUPIPE_PUBLIC_STORAGE_URL": "public_storage_url",
    "GPUPIPE_API_KEY_PEPPER": "api_key_pepper",
    "GPUPIPE_API_URL": "api_url",
    "GPUPIPE_LOG_FORMAT": "log_format",
    "GPUPIPE_LOG_LEVEL": "log_level",
    "GPUPIPE_DEFAULT_MODEL": "default_model",
    "GPUPIPE_SIGNED_URL_TTL_SECONDS": "signed_url_ttl_seconds",
    "GPUPIPE_INBOX_BUCKET": "names.inbox_bucket",
    "GPUPIPE_OUTPUTS_BUCKET": "names.outputs_bucket",
    "GPUPIPE_MODELS_BUCKET": "names.models_bucket",
    "GPUPIPE_JOBS_TOPIC": "names.jobs_topic",
    "GPUPIPE_JOBS_SUBSCRIPTION": "names.jobs_subscription",
    "GPUPIPE_JOBS_DEAD_TOPIC": "names.jobs_dead_topic",
    "GPUPIPE_JOBS_DEAD_SUBSCRIPTION": "names.jobs_dead_subscription",
    "GPUPIPE_UPLOADS_TOPIC": "names.uploads_topic",
    "GPUPIPE_UPLOADS_SUBSCRIPTION": "names.uploads_subscription",
    "GPUPIPE_UNDELIVERABLE_TOPIC": "names.undeliverable_topic",
    "GPUPIPE_UNDELIVERABLE_SUBSCRIPTION": "names.undeliverable_subscription",
    "GPUPIPE_CLOUD_SDK_ROOT": "emulators.cloud_sdk_root",
    "GPUPIPE_STATE_DIR": "emulators.state_dir",
    "GPUPIPE_STORAGE_EMULATOR_HTTPS_PORT": "emulators.storage_https_port",
    "GPUPIPE_EMULATOR_STARTUP_TIMEOUT_SECONDS": "emulators.startup_timeout_seconds",
    "GPUPIPE_MAX_PROMPT_CHARS": "request_limits.max_prompt_chars",
    "GPUPIPE_MIN_SIZE": "request_limits.min_size",
    "GPUPIPE_MAX_SIZE": "request_limits.max_size",
    "GPUPIPE_DEFAULT_SIZE": "request_limits.default_size",
    "GPUPIPE_MAX_STEPS": "request_limits.max_steps",
    "GPUPIPE_DEFAULT_STEPS": "request_limits.default_steps",
    "GPUPIPE_MAX_IMAGES_PER_JOB": "request_limits.max_images_per_job",
    "GPUPIPE_MAX_BODY_BYTES": "request_limits.max_body_bytes",
    "GPUPIPE_MAX_UPLOAD_BYTES": "request_limits.max_upload_bytes",
    "GPUPIPE_MAX_UPLOAD_LINES": "request_limits.max_upload_lines",
    "GPUPIPE_DEFAULT_MAX_CONCURRENT_JOBS": "user_limits.max_concurrent_jobs",
    "GPUPIPE_DEFAULT_DAILY_IMAGES": "user_limits.daily_images",
    "GPUPIPE_DEFAULT_REQUESTS_PER_MINUTE": "user_limits.requests_per_minute",
    "GPUPIPE_WORKER_MAX_BATCH_SIZE": "worker.max_batch_size",
    "GPUPIPE_WORKER_MAX_BATCH_WAIT_SECONDS": "worker.max_batch_wait_seconds",
    "GPUPIPE_WORKER_MAX_OUTSTANDING_MESSAGES": "worker.max_outstanding_messages",
    "GPUPIPE_WORKER_LEASE_EXTENSION_SECONDS": "worker.lease_extension_seconds",
    "GPUPIPE_WORKER_SHUTDOWN_GRACE_SECONDS": "worker.shutdown_grace_seconds",
    "GPUPIPE_WORKER_PROGRESS_INTERVAL_SECONDS": "worker.progress_interval_seconds",
    "GPUPIPE_WORKER_DEVICE": "worker.device",
    "GPUPIPE_WORKER_DTYPE": "worker.dtype",
    "GPUPIPE_MODEL_CACHE_DIR": "worker.model_cache_dir",
    "GPUPIPE_WORKER_MODEL": "worker.model_name",
    "GPUPIPE_WORKER_MODEL_PATH": "worker.model_path",
    "GPUPIPE_WORKER_HEALTH_PORT": "worker.health_port",
    "GPUPIPE_WORKER_HEALTH_HOST": "worker.health_host",
    "GPUPIPE_WORKER_EXIT_WHEN_IDLE_SECONDS": "worker.exit_when_idle_seconds",
    "GPUPIPE_WORKER_PULL_MODE": "worker.pull_mode",
    "GPUPIPE_RECOVERY_INTERVAL_SECONDS": "recovery.interval_seconds",
    "GPUPIPE_RECOVERY_QUEUED_AFTER_SECONDS": "recovery.queued_after_seconds",
    "GPUPIPE_RECOVERY_STALE_AFTER_SECONDS": "recovery.stale_after_seconds",
    "GPUPIPE_RECOVERY_MAX_ATTEMPTS": "recovery.max_attempts",
    "GPUPIPE_RECOVERY_SWEEP_LIMIT": "recovery.sweep_limit",
    "GPUPIPE_RECOVERY_STREAM_STALL_SECONDS": "recovery.stream_stall_seconds",
    "GPUPIPE_UPLOAD_CLAIM_LEASE_SECONDS": "recovery.upload_claim_lease_seconds",
    "GPUPIPE_DISPATCH_WORKER_JOB": "dispatch.worker_job",
    "GPUPIPE_DISPATCH_JOBS_PER_WORKER": "dispatch.jobs_per_worker",
    "GPUPIPE_DISPATCH_MAX_WORKERS": "dispatch.max_workers",
    "GPUPIPE_DISPATCH_URL": "dispatch.url",
}

_LOCAL_PEPPER = "local-development-pepper-not-secret"


def _defaults_for(env: Environment) -> dict[str, Any]:
    prefix = "gpupipe-local" if env in (Environment.LOCAL, Environment.TEST) else f"gpupipe-{env.value}"
    data: dict[str, Any] = {"names": resource_names(prefix)}
    if env in (Environment.LOCAL, Environment.TEST):
        data.update(
            project_id="gpupipe-local",
            backend="memory" if env is Environment.TEST else "gcp",
            api_key_pepper=_LOCAL_PEPPER,
            log_format="text" if env is Environment.TEST else "json",
            request_limits={"default_size": 64, "max_size": 512, "default_steps": 20},
            worker={
                "model_cache_dir": ".gpupipe/model-cache",
                "device": "cpu",
                "dtype": "float32",
                # Short leases: a worker killed locally gives its jobs back within seconds.
                "lease_extension_seconds": 15,
            },
            # The delivery contract's local bound: every accepted job ends within 120 s of a fault.
            recovery={
                "interval_seconds": 5,
                "queued_after_seconds": 20,
                "stream_stall_seconds": 20,
                "upload_claim_lease_seconds": 10,
            },
        )
    else:
        # Staging and prod must be told their project and pepper; no silent defaults.
        data.update(backend="gcp")
    return data


def _put(data: dict[str, Any], dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _explain(exc: ValidationError) -> str:
    by_path = {path: var for var, path in ENV_VARS.items()}
    problems = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        var = by_path.get(path, path)
        problems.append(f"{var}: {err['msg']}")
    return "invalid settings: " + "; ".join(problems)
