"""Encode generated images, with what made them in the image metadata.

PNG gets text chunks (`gpupipe` holds the parameters as JSON, `parameters` a readable line);
JPEG and WebP get EXIF `ImageDescription` (the same JSON) and `Software`. Nothing that changes
between runs (job id, time) goes in, so the same job parameters give the same bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

SOFTWARE = "gpupipe"
_EXIF_IMAGE_DESCRIPTION = 0x010E
_EXIF_SOFTWARE = 0x0131
_PIL_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}


def image_parameters(
    job_input: Mapping[str, Any], *, index: int, model_name: str, model_version: str
) -> dict[str, Any]:
    """The parameters recorded in image `index` of a job."""
    seed = int(job_input["seed"]) + index
    return {
        "prompt": job_input["prompt"],
        "negative_prompt": job_input.get("negative_prompt"),
        "width": job_input["width"],
        "height": job_input["height"],
        "num_inference_steps": job_input["num_inference_steps"],
        "guidance_scale": job_input["guidance_scale"],
        "scheduler": job_input.get("scheduler"),
        "seed": seed,
        "index": index,
        "model": model_name,
        "model_version": model_version,
    }


def encode_image(image: Image, output_format: str, parameters: Mapping[str, Any]) -> bytes:
    """The image as `output_format` bytes with `parameters` in its metadata."""
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    if output_format not in _PIL_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(_PIL_FORMATS)}, got {output_format!r}")
    text = json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))
    buffer = io.BytesIO()
    if output_format == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("gpupipe", text)
        info.add_text("parameters", _readable(parameters))
        info.add_text("Software", SOFTWARE)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        exif = PILImage.Exif()
        exif[_EXIF_IMAGE_DESCRIPTION] = text
        exif[_EXIF_SOFTWARE] = SOFTWARE
        options: dict[str, Any] = {"quality": 95} if output_format == "jpeg" else {"quality": 90, "method": 4}
        image.convert("RGB").save(buffer, format=_PIL_FORMATS[output_format], exif=exif.tobytes(), **options)
    return buffer.getvalue()


def read_parameters(data: bytes) -> dict[str, Any]:
    """The parameters `encode_image` stored in an image (tests, tools)."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as image:
        if image.format == "PNG":
            text = image.text.get("gpupipe")  # type: ignore[attr-defined]
        else:
            text = image.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    if not text:
        raise ValueError("the image carries no gpupipe parameters")
    parameters: dict[str, Any] = json.loads(text)
    return parameters


def _readable(parameters: Mapping[str, Any]) -> str:
    line = str(parameters["prompt"])
    if parameters.get("negative_prompt"):
        line += f"\nNegative prompt: {parameters['negative_prompt']}"
    line += (
        f"\nSteps: {parameters['num_inference_steps']}, Sampler: {parameters.get('scheduler') or 'default'}, "
        f"CFG scale: {parameters['guidance_scale']}, Seed: {parameters['seed']}, "
        f"Size: {parameters['width']}x{parameters['height']}, Model: {parameters['model']}, "
        f"Model version: {parameters['model_version']}"
    )
    return line
