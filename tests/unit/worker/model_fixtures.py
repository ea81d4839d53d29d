"""Session fixtures with the tiny model (built once) and its runner; the worker's unit and
integration conftests import them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never reach a model hub; huggingface_hub reads this when it is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpu_worker.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_runner(tiny_model_dir: Path) -> Iterator[object]:
    import torch

    from gpu_worker.model_store import local_version
    from gpu_worker.runner import DiffusersRunner

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; one core is what the figures assume
    try:
        yield DiffusersRunner(
            str(tiny_model_dir),
            model_name="tiny-sd",
            model_version=local_version(tiny_model_dir),
            device="cpu",
            dtype="float32",
        )
    finally:
        torch.set_num_threads(threads)
