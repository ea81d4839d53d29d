"""A tiny, deterministic Stable Diffusion pipeline built offline.

Nothing can be downloaded from a model hub here, so tests and the local demo use a pipeline made
of the real diffusers and transformers components (UNet2DConditionModel, a 4-level
AutoencoderKL, CLIPTextModel, a byte-level BPE CLIP tokenizer, a PNDM scheduler) with small
configs and random weights from a fixed seed. It is saved with `save_pretrained`, so the worker
loads it through the same `from_pretrained` path as any real model; nothing in the worker
special-cases it.

    python -m gpu_worker.tiny_model OUT_DIR [--register] [--name tiny-sd] [--version VERSION]

`--register` uploads the folder as a model version to the models bucket and promotes it (with
the environment's settings, e.g. the local emulators).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

MODEL_NAME = "tiny-sd"
SEED = 20240521

# A small corpus the BPE merges are learned from: words that prompts use.
_CORPUS = """
a photo of an astronaut riding a horse on the moon, a painting of a cat sitting in the garden,
the city at night with neon lights and rain, a portrait of a woman in the style of an oil painting,
mountains and a lake at sunrise, a red car driving on the highway, a bowl of fruit on the table,
a dog playing in the snow, the ocean with waves and a lighthouse, a castle in the forest,
highly detailed, sharp focus, digital art, watercolor, cinematic lighting, blurry, low quality,
landscape, flowers, sunset, sky, clouds, river, street, tree, house, robot, dragon, bird
"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def build_bpe_vocabulary(num_merges: int = 256) -> tuple[dict[str, int], list[str]]:
    """Learn `num_merges` BPE merges from the embedded corpus (deterministic: ties break by
    pair order). Returns the CLIP-style vocabulary (bytes, bytes with `</w>`, merges, the two
    special tokens) and the merges."""
    byte_chars = list(_bytes_to_unicode().values())
    words = collections.Counter(w for w in _CORPUS.lower().replace(",", " ").split())
    splits = {word: [*word[:-1], word[-1] + "</w>"] for word in words}
    merges: list[str] = []
    for _ in range(num_merges):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for word, count in words.items():
            parts = splits[word]
            for pair in zip(parts, parts[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(f"{best[0]} {best[1]}")
        for word, parts in splits.items():
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            splits[word] = merged
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + [m.replace(" ", "") for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def build(out_dir: str | Path) -> Path:
    """Build the tiny pipeline and save it under `out_dir` (diffusers layout); return the path."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_bpe_vocabulary()
    # The BPE files a CLIP tokenizer is made from, kept beside the saved tokenizer.
    source = out / "tokenizer"
    source.mkdir(exist_ok=True)
    (source / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, sort_keys=True))
    (source / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    merge_pairs: Any = [tuple(line.split(" ")) for line in (source / "merges.txt").read_text().splitlines()[1:]]
    tokenizer = CLIPTokenizer(
        vocab=json.loads((source / "vocab.json").read_text()),
        merges=merge_pairs,
        model_max_length=77,
    )

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            projection_dim=32,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.tiny_model", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the pipeline to (diffusers layout)")
    parser.add_argument("--register", action="store_true", help="register it in the models bucket and promote it")
    parser.add_argument("--name", default=MODEL_NAME, help=f"model name to register under (default {MODEL_NAME})")
    parser.add_argument("--version", default=None, help="version to register (default: derived from the content)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = build(args.out_dir)
    print(f"built {path}")
    if args.register:
        from adapters.bootstrap import bootstrap
        from core.model_registry import ModelRegistry
        from core.settings import Settings

        settings = Settings.from_env(os.environ)
        backends = bootstrap(settings)
        registry = ModelRegistry(backends.documents, backends.blobs, settings.names.models_bucket)
        version = registry.register(args.name, path, version=args.version, promote=True, exist_ok=True)
        print(f"registered {args.name} version {version.version} at {version.uri} (active)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
