"""The dynamic batcher: grouping by compatibility, size and wait limits, order, removal."""

from __future__ import annotations

import threading
import time

import pytest

from gpu_worker.batcher import Batcher


def test_a_full_group_is_released_at_once() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=3, max_wait_seconds=60)
    for item in ("a", "b", "c", "d"):
        batcher.put("k", item)
    began = time.monotonic()
    assert batcher.next_batch(timeout=5) == ["a", "b", "c"]
    assert time.monotonic() - began < 0.5
    assert len(batcher) == 1


def test_a_partial_group_waits_for_max_wait_then_goes() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=8, max_wait_seconds=0.3)
    batcher.put("k", "a")
    began = time.monotonic()
    assert batcher.next_batch(timeout=0.1) is None
    assert batcher.next_batch(timeout=5) == ["a"]
    waited = time.monotonic() - began
    assert 0.25 <= waited < 1.5


def test_only_compatible_items_share_a_batch() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=4, max_wait_seconds=0)
    batcher.put(("64x64", 20), "a")
    batcher.put(("64x64", 30), "b")
    batcher.put(("64x64", 20), "c")
    first = batcher.next_batch(timeout=1)
    second = batcher.next_batch(timeout=1)
    assert first == ["a", "c"] and second == ["b"]


def test_the_group_with_the_oldest_item_goes_first() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=2, max_wait_seconds=0)
    batcher.put("late", "x")
    batcher.put("early", "y")
    batcher.put("early", "z")  # full, but "late" has waited longer and is due too
    assert batcher.next_batch(timeout=1) == ["x"]
    assert batcher.next_batch(timeout=1) == ["y", "z"]


def test_images_count_toward_the_size_and_a_job_is_never_split() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=4, max_wait_seconds=0)
    batcher.put("k", "three", images=3)
    batcher.put("k", "two", images=2)
    batcher.put("k", "one", images=1)
    assert batcher.next_batch(timeout=1) == ["three"]  # FIFO: "one" does not jump over "two"
    assert batcher.next_batch(timeout=1) == ["two", "one"]
    batcher.put("k", "huge", images=9)
    assert batcher.next_batch(timeout=1) == ["huge"]


def test_a_waiting_consumer_wakes_when_a_group_fills() -> None:
    batcher: Batcher[int] = Batcher(max_batch_size=2, max_wait_seconds=30)
    got: list[list[int] | None] = []
    consumer = threading.Thread(target=lambda: got.append(batcher.next_batch(timeout=10)))
    consumer.start()
    batcher.put("k", 1)
    time.sleep(0.05)
    batcher.put("k", 2)
    consumer.join(timeout=5)
    assert got == [[1, 2]]


def test_remove_takes_out_selected_items() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=4, max_wait_seconds=0)
    for item in ("a", "b", "c"):
        batcher.put("k", item)
    assert batcher.remove(lambda item: item == "b") == ["b"]
    assert batcher.next_batch(timeout=1) == ["a", "c"]


def test_close_returns_what_waits_and_releases_nothing_more() -> None:
    batcher: Batcher[str] = Batcher(max_batch_size=4, max_wait_seconds=10)
    batcher.put("k", "a")
    waiter_result: list[list[str] | None] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(batcher.next_batch(timeout=10)))
    waiter.start()
    time.sleep(0.05)
    assert batcher.close() == ["a"]
    waiter.join(timeout=2)
    assert waiter_result == [None]
    batcher.put("k", "b")
    assert batcher.next_batch(timeout=0.1) is None


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(max_batch_size=0, max_wait_seconds=0)
