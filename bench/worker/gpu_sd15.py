"""GPU benchmark: the full SD 1.5 architecture with random weights (same cost as real ones).

512x512, 25 steps, guidance 7.5. Our runner in fp16 (SDPA, channels-last UNet) at batch 1, 4,
8 and 16, against plain diffusers in fp32 at batch 1 on the same machine. Each figure is also
given as a fraction of the compute bound: 42.7 TFLOP per image (the README's "Measured figures") at the
device's dense fp16/bf16 tensor peak.

Runs only where CUDA is present; elsewhere it says so and returns no rows (no figure is
estimated). `python -m bench.worker.gpu_sd15` runs it alone.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TFLOP_PER_IMAGE = 42.7
# Dense fp16/bf16 tensor-core peak (TFLOP/s), by device name fragment.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10G": 125.0, "L40S": 362.0, "T4": 65.0}
BATCH_SIZES = (1, 4, 8, 16)
STEPS = 25
SIZE = 512
SKIP_MESSAGE = (
    "skipped: no CUDA device here (the GPU benchmark runs only where torch sees CUDA; no figure is estimated)"
)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def build_sd15(folder: Path) -> Path:
    """SD 1.5's architecture (UNet 859.5 M parameters, VAE, CLIP ViT-L/14 text encoder) with
    random weights, saved in fp16 in diffusers layout."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from gpu_worker.tiny_model import build_bpe_vocabulary

    torch.manual_seed(0)
    unet: Any = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    vae: Any = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    vocab, merges = build_bpe_vocabulary()
    pairs: Any = [tuple(m.split(" ")) for m in merges]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )
    parameters = sum(p.numel() for p in unet.parameters())
    print(f"UNet parameters: {parameters / 1e6:.1f} M", file=sys.stderr)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    pipeline: Any = StableDiffusionPipeline(
        vae=vae.half(),
        text_encoder=text_encoder.half(),
        tokenizer=tokenizer,
        unet=unet.half(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def _peak(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def run() -> list[dict[str, Any]]:
    if not cuda_available():
        print(SKIP_MESSAGE)
        return []
    import torch
    from diffusers import StableDiffusionPipeline

    from gpu_worker.runner import BatchSpec, DiffusersRunner, ImageRequest

    device_name = torch.cuda.get_device_name(0)
    peak = _peak(device_name)
    rows: list[dict[str, Any]] = []

    def row(impl: str, dtype: str, batch: int, seconds: float, repeats: int) -> dict[str, Any]:
        images_per_second = batch * repeats / seconds
        achieved = images_per_second * TFLOP_PER_IMAGE
        return {
            "device": device_name,
            "implementation": impl,
            "dtype": dtype,
            "batch_size": batch,
            "seconds_per_batch": round(seconds / repeats, 4),
            "images_per_second": round(images_per_second, 3),
            "achieved_tflops": round(achieved, 1),
            "peak_tflops": peak,
            "fraction_of_compute_bound": round(achieved / peak, 3) if peak else None,
        }

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_sd15(Path(tmp) / "sd15-random")
        runner = DiffusersRunner(
            str(folder),
            model_name="sd15-random",
            model_version="random",
            device="cuda",
            dtype="float16",
            warm_up_size=SIZE,
        )
        runner.warm_up()
        for batch in BATCH_SIZES:
            spec = BatchSpec("random", SIZE, SIZE, STEPS, 7.5, None)
            requests = [ImageRequest(f"j{i}", "a photo of an astronaut riding a horse", None, i) for i in range(batch)]
            runner.generate(spec, requests, is_cancelled=lambda _k: False, on_progress=lambda _p: None)  # warm
            repeats = 3
            torch.cuda.synchronize()
            began = time.perf_counter()
            for _ in range(repeats):
                runner.generate(spec, requests, is_cancelled=lambda _k: False, on_progress=lambda _p: None)
            torch.cuda.synchronize()
            rows.append(row("gpupipe runner", "float16", batch, time.perf_counter() - began, repeats))
        del runner
        torch.cuda.empty_cache()

        plain: Any = StableDiffusionPipeline.from_pretrained(
            folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False, local_files_only=True
        ).to("cuda")
        plain.set_progress_bar_config(disable=True)
        plain("warm up", num_inference_steps=2, height=SIZE, width=SIZE)
        torch.cuda.synchronize()
        began = time.perf_counter()
        repeats = 3
        for _ in range(repeats):
            plain(
                "a photo of an astronaut riding a horse",
                num_inference_steps=STEPS,
                height=SIZE,
                width=SIZE,
                guidance_scale=7.5,
            )
        torch.cuda.synchronize()
        rows.append(row("plain diffusers", "float32", 1, time.perf_counter() - began, repeats))
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
