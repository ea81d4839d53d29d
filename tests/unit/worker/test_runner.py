"""The diffusers runner with the tiny model on CPU: seeds, batching, schedulers, cancellation,
encoding and metadata."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.job_request import SCHEDULERS
from gpu_worker.encoding import encode_image, image_parameters, read_parameters
from gpu_worker.errors import PermanentError
from gpu_worker.runner import SCHEDULER_CLASSES, BatchSpec, DiffusersRunner, ImageRequest, resolve_dtype
from tests.unit.worker.support import IGNORE_SCHEDULER_NUMPY_WARNING

pytestmark = pytest.mark.filterwarnings(IGNORE_SCHEDULER_NUMPY_WARNING)

STEPS = 6


def spec(runner: Any, *, steps: int = STEPS, scheduler: str | None = None, guidance: float = 7.5) -> BatchSpec:
    return BatchSpec(runner.model_version, 64, 64, steps, guidance, scheduler)


def run(runner: DiffusersRunner, requests: list[ImageRequest], **kw: Any) -> dict[str, list[np.ndarray]]:
    result = runner.generate(spec(runner, **kw), requests, is_cancelled=lambda _k: False, on_progress=lambda _p: None)
    return {k: [np.asarray(im, dtype=np.int16) for im in ims] for k, ims in result.images.items()}


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tiny_runner: DiffusersRunner) -> None:
    first = run(tiny_runner, [ImageRequest("a", "a red car", None, 7)])["a"][0]
    again = run(tiny_runner, [ImageRequest("a", "a red car", None, 7)])["a"][0]
    other = run(tiny_runner, [ImageRequest("a", "a red car", None, 8)])["a"][0]
    assert first.shape == (64, 64, 3)
    assert png(first) == png(again)
    assert png(first) != png(other)
    assert np.abs(first - other).mean() > 1.0


def test_a_batch_gives_each_job_the_image_it_gets_alone(tiny_runner: DiffusersRunner) -> None:
    requests = [
        ImageRequest("a", "a red car", None, 1),
        ImageRequest("b", "a castle in the forest", "blurry", 2, num_images=2),
        ImageRequest("c", "the ocean", None, 3),
    ]
    together = run(tiny_runner, requests)
    for request in requests:
        alone = run(tiny_runner, [request])[request.key]
        assert len(together[request.key]) == request.num_images == len(alone)
        for mine, theirs in zip(together[request.key], alone, strict=True):
            assert np.abs(mine - theirs).max() <= 2, f"{request.key} differs beyond float noise"


def test_image_i_of_a_job_uses_seed_plus_i(tiny_runner: DiffusersRunner) -> None:
    pair = run(tiny_runner, [ImageRequest("a", "a dog", None, 10, num_images=2)])["a"]
    second_alone = run(tiny_runner, [ImageRequest("a", "a dog", None, 11)])["a"][0]
    assert np.abs(pair[1] - second_alone).max() <= 2
    assert np.abs(pair[0] - pair[1]).mean() > 1.0


def test_negative_prompt_changes_the_image(tiny_runner: DiffusersRunner) -> None:
    plain = run(tiny_runner, [ImageRequest("a", "a dog", None, 5)])["a"][0]
    negative = run(tiny_runner, [ImageRequest("a", "a dog", "snow, blurry", 5)])["a"][0]
    assert np.abs(plain - negative).mean() > 0.1


def test_every_job_scheduler_name_maps_to_a_diffusers_scheduler(tiny_runner: DiffusersRunner) -> None:
    assert set(SCHEDULER_CLASSES) == set(SCHEDULERS)
    default = run(tiny_runner, [ImageRequest("a", "a bird", None, 3)])["a"][0]
    outputs = {}
    for name in SCHEDULERS:
        assert type(tiny_runner.scheduler(name)).__name__ == SCHEDULER_CLASSES[name]
        outputs[name] = run(tiny_runner, [ImageRequest("a", "a bird", None, 3)], scheduler=name)["a"][0]
    assert np.array_equal(outputs["pndm"], default)  # the tiny model's own scheduler is PNDM
    assert np.abs(outputs["ddim"] - outputs["euler_ancestral"]).mean() > 0.1
    with pytest.raises(PermanentError, match="scheduler"):
        tiny_runner.scheduler("heun")


def test_cancelling_every_job_stops_the_pipeline_within_a_step(tiny_runner: DiffusersRunner) -> None:
    seen: list[float] = []

    def cancelled(_key: str) -> bool:
        return len(seen) >= 2

    result = tiny_runner.generate(
        spec(tiny_runner, steps=40),
        [ImageRequest("a", "x", None, 1), ImageRequest("b", "y", None, 2)],
        is_cancelled=cancelled,
        on_progress=seen.append,
    )
    assert result.images == {}
    assert result.cancelled == {"a", "b"}
    assert result.steps_run == 2
    assert len(seen) == 2 and 0 < seen[0] < seen[1] < 0.1


def test_cancelling_one_job_keeps_the_others(tiny_runner: DiffusersRunner) -> None:
    steps: list[float] = []
    result = tiny_runner.generate(
        spec(tiny_runner),
        [ImageRequest("a", "x", None, 1), ImageRequest("b", "y", None, 2)],
        is_cancelled=lambda key: key == "b" and len(steps) >= 1,
        on_progress=steps.append,
    )
    assert set(result.images) == {"a"}
    assert result.cancelled == {"b"}
    assert result.steps_run >= STEPS
    assert steps[-1] == 1.0
    assert result.model_seconds > 0


def test_a_job_cancelled_before_the_start_costs_nothing(tiny_runner: DiffusersRunner) -> None:
    result = tiny_runner.generate(
        spec(tiny_runner), [ImageRequest("a", "x", None, 1)], is_cancelled=lambda _k: True, on_progress=lambda _p: None
    )
    assert result.images == {} and result.cancelled == {"a"} and result.model_seconds == 0


@pytest.mark.parametrize(("fmt", "pil_format"), [("png", "PNG"), ("webp", "WEBP"), ("jpeg", "JPEG")])
def test_outputs_carry_the_job_parameters_and_model_version(
    tiny_runner: DiffusersRunner, fmt: str, pil_format: str
) -> None:
    job_input = {
        "prompt": "a red car",
        "negative_prompt": None,
        "width": 64,
        "height": 64,
        "num_inference_steps": STEPS,
        "guidance_scale": 7.5,
        "scheduler": None,
        "seed": 7,
    }
    image = tiny_runner.generate(
        spec(tiny_runner),
        [ImageRequest("a", "a red car", None, 7)],
        is_cancelled=lambda _k: False,
        on_progress=lambda _p: None,
    ).images["a"][0]
    params = image_parameters(job_input, index=0, model_name="tiny-sd", model_version=tiny_runner.model_version)
    data = encode_image(image, fmt, params)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == pil_format
        assert decoded.size == (64, 64)
    assert read_parameters(data) == params
    assert params["model_version"] == tiny_runner.model_version and params["seed"] == 7
    assert encode_image(image, fmt, params) == data  # nothing run-dependent in the bytes


def test_float16_is_refused_on_the_cpu() -> None:
    from gpu_worker.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="float16"):
        resolve_dtype("float16", "cpu")
