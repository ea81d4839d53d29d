"""The model runner: one diffusers pipeline per process, run on batches of compatible jobs.

Device and dtype come from settings (`auto`: CUDA with fp16 and SDPA attention where CUDA is
present, CPU fp32 otherwise). Image `i` of a job uses its own CPU `torch.Generator` seeded with
`seed + i`, so a job gets the same image whether it runs alone or in a batch (up to float noise
from the batched kernels). Cancellation is checked at each denoising step: when every job of a
batch is cancelled the pipeline stops; otherwise the batch finishes and the cancelled jobs'
images are dropped.

Only the GPU thread may call `generate` and `warm_up`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from core.jobs import image_seed
from core.settings import WorkerSettings
from gpu_worker.errors import BatchCancelled, ConfigurationError, PermanentError, TransientError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

log = logging.getLogger(__name__)

# core.job_request.SCHEDULERS -> diffusers scheduler class names.
SCHEDULER_CLASSES: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "lms": "LMSDiscreteScheduler",
}


@dataclass(frozen=True)
class BatchSpec:
    """What every job in a batch shares; jobs are compatible when their specs are equal."""

    model_version: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    scheduler: str | None


@dataclass(frozen=True)
class ImageRequest:
    """One job's part of a batch."""

    key: str
    prompt: str
    negative_prompt: str | None
    seed: int
    num_images: int = 1


@dataclass
class BatchResult:
    images: dict[str, list[Image]] = field(default_factory=dict)
    """The images of each job that was not cancelled, in index order."""
    cancelled: frozenset[str] = frozenset()
    model_seconds: float = 0.0
    steps_run: int = 0


class Runner(Protocol):
    """What the consumer needs from a model runner (a fake one in unit tests)."""

    model_name: str
    model_version: str

    def warm_up(self) -> float: ...

    def generate(
        self,
        spec: BatchSpec,
        requests: Sequence[ImageRequest],
        *,
        is_cancelled: Callable[[str], bool],
        on_progress: Callable[[float], None],
    ) -> BatchResult: ...


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("GPUPIPE_WORKER_DEVICE is cuda but torch sees no CUDA device")
    return setting


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    import torch

    if setting == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    dtype: torch.dtype = getattr(torch, setting)
    if device == "cpu" and dtype is torch.float16:
        raise ConfigurationError("GPUPIPE_WORKER_DTYPE float16 is not supported on the CPU; use float32 or bfloat16")
    return dtype


class DiffusersRunner:
    """A Stable Diffusion pipeline loaded once, from a local folder or (in the cloud) a hub id."""

    def __init__(
        self,
        source: str,
        *,
        model_name: str,
        model_version: str,
        device: str = "auto",
        dtype: str = "auto",
        warm_up_size: int = 64,
        local_files_only: bool = True,
    ) -> None:
        import torch
        from diffusers import StableDiffusionPipeline
        from diffusers.models.attention_processor import AttnProcessor2_0
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        self.model_name = model_name
        self.model_version = model_version
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._warm_up_size = warm_up_size
        self._torch = torch
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        started = time.perf_counter()
        pipeline: Any = StableDiffusionPipeline.from_pretrained(
            source,
            dtype=self.dtype,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=local_files_only,
        )
        pipeline.set_progress_bar_config(disable=True)
        if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            pipeline.unet.set_attn_processor(AttnProcessor2_0())
            pipeline.vae.set_attn_processor(AttnProcessor2_0())
        if self.device != "cpu":
            pipeline.unet.to(memory_format=torch.channels_last)
        self._pipeline = pipeline.to(self.device)
        self._default_scheduler = pipeline.scheduler
        self._schedulers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started
        log.info(
            "model loaded",
            extra={
                "model": model_name,
                "model_version": model_version,
                "device": self.device,
                "dtype": str(self.dtype),
            },
        )

    @classmethod
    def from_settings(
        cls,
        source: str,
        *,
        model_name: str,
        model_version: str,
        worker: WorkerSettings,
        warm_up_size: int,
        local_files_only: bool = True,
    ) -> DiffusersRunner:
        return cls(
            source,
            model_name=model_name,
            model_version=model_version,
            device=worker.device,
            dtype=worker.dtype,
            warm_up_size=warm_up_size,
            local_files_only=local_files_only,
        )

    def warm_up(self) -> float:
        """Run one small generation so the first job pays no one-off costs; returns seconds."""
        started = time.perf_counter()
        spec = BatchSpec(self.model_version, self._warm_up_size, self._warm_up_size, 2, 7.5, None)
        self.generate(
            spec,
            [ImageRequest("warm-up", "warm up", None, 0)],
            is_cancelled=lambda _k: False,
            on_progress=lambda _p: None,
        )
        return time.perf_counter() - started

    def scheduler(self, name: str | None) -> Any:
        if name is None:
            return self._default_scheduler
        if name not in SCHEDULER_CLASSES:
            raise PermanentError(
                "invalid_argument", f"`scheduler` must be one of {', '.join(SCHEDULER_CLASSES)}, got {name!r}"
            )
        if name not in self._schedulers:
            import diffusers

            cls = getattr(diffusers, SCHEDULER_CLASSES[name])
            self._schedulers[name] = cls.from_config(self._default_scheduler.config)
        return self._schedulers[name]

    def generate(
        self,
        spec: BatchSpec,
        requests: Sequence[ImageRequest],
        *,
        is_cancelled: Callable[[str], bool],
        on_progress: Callable[[float], None],
    ) -> BatchResult:
        torch = self._torch
        keys = [r.key for r in requests]
        cancelled = {k for k in keys if is_cancelled(k)}
        if len(cancelled) == len(keys):
            return BatchResult(cancelled=frozenset(cancelled))
        prompts: list[str] = []
        negatives: list[str] = []
        generators: list[Any] = []
        for request in requests:
            for i in range(request.num_images):
                prompts.append(request.prompt)
                negatives.append(request.negative_prompt or "")
                generators.append(torch.Generator(device="cpu").manual_seed(image_seed(request.seed, i)))
        steps_run = 0

        def on_step_end(pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal steps_run
            steps_run = step + 1
            # Some schedulers (PNDM) run one step more than asked: count the real timesteps.
            on_progress(min(1.0, steps_run / max(1, int(getattr(pipe, "num_timesteps", spec.steps)))))
            cancelled.update(k for k in keys if k not in cancelled and is_cancelled(k))
            if len(cancelled) == len(keys):
                raise BatchCancelled()
            return tensors

        with self._lock:
            self._pipeline.scheduler = self.scheduler(spec.scheduler)
            started = time.perf_counter()
            try:
                output = self._pipeline(
                    prompt=prompts,
                    negative_prompt=negatives if any(negatives) else None,
                    width=spec.width,
                    height=spec.height,
                    num_inference_steps=spec.steps,
                    guidance_scale=spec.guidance_scale,
                    generator=generators,
                    output_type="pil",
                    callback_on_step_end=on_step_end,
                )
            except BatchCancelled:
                return BatchResult(
                    cancelled=frozenset(cancelled), model_seconds=self._elapsed(started), steps_run=steps_run
                )
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise TransientError(f"the GPU ran out of memory on a batch of {len(prompts)} images") from exc
            except (ValueError, TypeError) as exc:
                # The pipeline rejected the arguments: no retry can change that.
                raise PermanentError("model_rejected", str(exc)) from exc
            model_seconds = self._elapsed(started)
        images = list(output.images)
        result = BatchResult(cancelled=frozenset(cancelled), model_seconds=model_seconds, steps_run=steps_run)
        offset = 0
        for request in requests:
            if request.key not in cancelled:
                result.images[request.key] = images[offset : offset + request.num_images]
            offset += request.num_images
        return result

    def _elapsed(self, started: float) -> float:
        if self.device == "cuda":
            self._torch.cuda.synchronize()
        return time.perf_counter() - started
