"""Fixtures for the worker's unit tests."""

from tests.unit.worker.model_fixtures import tiny_model_dir, tiny_runner

__all__ = ["tiny_model_dir", "tiny_runner"]
