"""The delivery contract under SIGKILLs, in a size that fits CI (`make chaos` runs the large one).

A stack of its own with three workers; 60 HTTP jobs from 5 users while 6 workers are SIGKILLed
(each replaced at once), the `api` process is SIGKILLed under load, and `on_upload` is SIGKILLed
mid-ingest of a 50-line upload. Then every job, listed through the API, must be terminal within
the contract's bound, each output written once, one usage record per terminal job, every
concurrency counter back to 0, the batch completed once, and new jobs as fast as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.chaos.__main__ import CHAOS_WORKER_ENV, own_environment
from bench.chaos.driver import ChaosConfig, run
from core.settings import Settings
from emulators import stack as local_stack
from emulators.stack import RunningStack

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def environ() -> dict[str, str]:
    return own_environment(os.environ)


@pytest.fixture(scope="module")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, environ: dict[str, str]
) -> Iterator[RunningStack]:
    cache = getattr(pytestconfig, "cache", None)
    cache_dir = cache.mkdir("gpupipe-tiny-model") if cache is not None else tmp_path_factory.mktemp("model")
    stack = local_stack.start(
        Settings.from_env({"GPUPIPE_ENV": "local"}),
        environ=environ,
        state_dir=tmp_path_factory.mktemp("chaos-stack"),
        workers=3,
        model_dir=Path(cache_dir) / local_stack.MODEL_NAME,
        worker_env=CHAOS_WORKER_ENV,
    )
    try:
        yield stack
    finally:
        stack.stop(persist=False)


@pytest.mark.timeout(900)
def test_every_accepted_job_ends_once_whatever_dies(
    chaos_stack: RunningStack, environ: dict[str, str], record_chaos: Callable[[dict[str, object]], None]
) -> None:
    config = ChaosConfig(jobs=60, users=5, worker_kills=6, kill_interval=8.0, api_kills=1, upload_lines=50)
    result = run(chaos_stack, config, environ)
    summary = result.row()
    record_chaos(summary)
    assert (result.worker_kills, result.api_kills, result.upload_kills) == (6, 1, 1), summary
    assert result.stranded == 0 and result.percent_terminal == 100.0, summary
    assert result.seconds_last_fault_to_all_terminal is not None
    assert result.seconds_last_fault_to_all_terminal <= config.bound_seconds, summary
    assert result.jobs == 110 and result.terminal >= 110, summary  # jobs admitted without a 202 count too
    assert result.succeeded == result.terminal, summary  # nothing here makes a job fail
    assert result.duplicate_outputs == 0 and result.rewritten_outputs == 0, summary
    assert result.usage_mismatches == 0 and result.counters_not_zero == 0, summary
    assert result.batch_completed, summary
    # New jobs after the faults finish about as fast as on the fresh stack.
    assert result.after_max_seconds <= max(3 * result.baseline_seconds, result.baseline_seconds + 10), summary
