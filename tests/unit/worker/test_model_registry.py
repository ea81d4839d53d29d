"""The model registry and model store on the memory fakes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from adapters.memory import MemoryBackends
from core.errors import Conflict, InvalidArgument, NotFoundError
from core.model_registry import MANIFEST, ManifestMismatch, ModelRegistry, list_models
from core.settings import Settings
from gpu_worker import registry_cli
from gpu_worker.errors import ConfigurationError
from gpu_worker.model_store import local_version, resolve_model


def model_folder(root: Path, weights: bytes = b"weights") -> Path:
    (root / "unet").mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    return root


@pytest.fixture
def registry(memory_backends: MemoryBackends, memory_settings: Settings) -> ModelRegistry:
    return ModelRegistry(memory_backends.documents, memory_backends.blobs, memory_settings.names.models_bucket)


def test_register_promote_rollback_and_list(
    registry: ModelRegistry, tmp_path: Path, memory_backends: MemoryBackends
) -> None:
    first = registry.register("tiny-sd", model_folder(tmp_path / "a", b"one"), version="v1")
    assert first.active and first.files == 2 and first.uri == f"gs://{registry.bucket}/tiny-sd/v1/"
    second = registry.register("tiny-sd", model_folder(tmp_path / "b", b"two"), version="v2")
    assert not second.active and registry.active("tiny-sd").version == "v1"
    assert registry.promote("tiny-sd", "v2").active
    assert list_models(memory_backends.documents) == [
        {"name": "tiny-sd", "version": "v1", "default": False},
        {"name": "tiny-sd", "version": "v2", "default": True},
    ]
    assert registry.rollback("tiny-sd").version == "v1"
    assert registry.active("tiny-sd").version == "v1"
    with pytest.raises(Conflict, match="roll back"):
        registry.rollback("tiny-sd")
    assert [(v.version, v.active) for v in registry.versions("tiny-sd")] == [("v1", True), ("v2", False)]
    with pytest.raises(NotFoundError):
        registry.promote("tiny-sd", "v9")


def test_a_version_is_immutable(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("tiny-sd", model_folder(tmp_path / "a", b"one"), version="v1")
    with pytest.raises(Conflict, match="other content"):
        registry.register("tiny-sd", model_folder(tmp_path / "b", b"two"), version="v1")
    assert registry.register("tiny-sd", tmp_path / "a", version="v1", exist_ok=True).version == "v1"


def test_versions_derived_from_content_are_stable(registry: ModelRegistry, tmp_path: Path) -> None:
    one = registry.register("tiny-sd", model_folder(tmp_path / "a", b"same"))
    two = registry.register("tiny-sd", model_folder(tmp_path / "b", b"same"), exist_ok=True)
    assert one.version == two.version and one.version.startswith("sha-")


def test_a_folder_that_is_not_a_pipeline_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(InvalidArgument, match="model_index.json"):
        registry.register("tiny-sd", tmp_path / "x")
    with pytest.raises(InvalidArgument, match="model name"):
        registry.register("Bad Name", model_folder(tmp_path / "y"))


def test_download_verifies_every_file_once(
    registry: ModelRegistry, tmp_path: Path, memory_backends: MemoryBackends
) -> None:
    version = registry.register("tiny-sd", model_folder(tmp_path / "src", b"weights"), version="v1")
    cache = tmp_path / "cache"
    folder = registry.download(version, cache)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == b"weights"
    assert json.loads((folder / MANIFEST).read_text())["version"] == "v1"
    # Cached: a second call reads nothing from the bucket.
    memory_backends.blobs.delete(registry.bucket, "tiny-sd/v1/model_index.json")
    assert registry.download(version, cache) == folder
    # A tampered object in the bucket is caught on a fresh download.
    memory_backends.blobs.write(registry.bucket, "tiny-sd/v1/model_index.json", b"{}")
    with pytest.raises(ManifestMismatch, match="model_index.json"):
        registry.download(version, tmp_path / "other-cache")
    assert not any((tmp_path / "other-cache" / "tiny-sd").glob("v1*"))


def test_the_worker_resolves_the_active_version_into_its_cache(
    registry: ModelRegistry, tmp_path: Path, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    registry.register("tiny-sd", model_folder(tmp_path / "src"), version="v7")
    settings = memory_settings.model_copy(
        update={"worker": memory_settings.worker.model_copy(update={"model_cache_dir": str(tmp_path / "cache")})}
    )
    source = resolve_model(settings, memory_backends.documents, memory_backends.blobs)
    assert (source.name, source.version, source.local) == ("tiny-sd", "v7", True)
    assert Path(source.location) == tmp_path / "cache" / "tiny-sd" / "v7"


def test_a_local_folder_gets_a_content_version_and_no_model_is_a_clear_error(
    tmp_path: Path, memory_backends: MemoryBackends, memory_settings: Settings
) -> None:
    folder = model_folder(tmp_path / "local")
    settings = memory_settings.model_copy(
        update={"worker": memory_settings.worker.model_copy(update={"model_path": str(folder)})}
    )
    source = resolve_model(settings, memory_backends.documents, memory_backends.blobs)
    assert source.version == local_version(folder) and source.version.startswith("local-")
    with pytest.raises(ConfigurationError, match="register"):
        resolve_model(memory_settings, memory_backends.documents, memory_backends.blobs)
    hub = memory_settings.model_copy(
        update={"worker": memory_settings.worker.model_copy(update={"model_path": "org/some-model"})}
    )
    with pytest.raises(ConfigurationError, match="not a folder"):  # no hub ids locally
        resolve_model(hub, memory_backends.documents, memory_backends.blobs)


def test_the_cli_registers_promotes_and_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], memory_backends: MemoryBackends
) -> None:
    parser = argparse.ArgumentParser()
    registry_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "register", "tiny-sd", str(model_folder(tmp_path / "m")), "--json"])
    env = {"GPUPIPE_ENV": "test"}
    assert args.func(args, env, backends=memory_backends) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["name"] == "tiny-sd" and printed[0]["active"] is True
    listing = parser.parse_args(["models", "list"])
    assert listing.func(listing, env, backends=memory_backends) == 0
    assert "* tiny-sd" in capsys.readouterr().out
    bad = parser.parse_args(["models", "promote", "tiny-sd", "nope"])
    assert bad.func(bad, env, backends=memory_backends) == 1
    assert "has no version nope" in capsys.readouterr().err
    empty = parser.parse_args(["models", "rollback", "other"])
    assert empty.func(empty, env, backends=memory_backends) == 1
    assert "not registered" in capsys.readouterr().err
