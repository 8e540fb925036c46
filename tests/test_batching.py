"""Batch sizes that back off on out-of-memory (core/batching.py), with fake forwards that fail above a size."""

from __future__ import annotations

import pytest
import torch

from core.batching import BatchMemoryError, BatchSize, auto_batch_size, is_out_of_memory, run_batched
from core.errors import UserError


def fake_forward(limit: int, calls: list[tuple[int, int]], error: type[BaseException] | None = None):
    """fn(start, stop) -> list(range(start, stop)); out of memory when the chunk is larger than ``limit``."""
    def fn(start: int, stop: int) -> list[int]:
        calls.append((start, stop))
        if stop - start > limit:
            if error is None:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise error("CUDA error: out of memory")
        return list(range(start, stop))
    return fn


def test_halves_until_it_fits_and_keeps_every_item_in_order() -> None:
    calls: list[tuple[int, int]] = []
    bs = BatchSize(64, "masks")
    out = bs.run(100, fake_forward(10, calls))
    assert [i for chunk in out for i in chunk] == list(range(100))
    assert bs.size == 8 and bs.backoffs == 3  # 64 -> 32 -> 16 -> 8
    assert all(stop - start <= 8 for start, stop in calls[3:])


def test_size_that_fitted_is_remembered_across_calls() -> None:
    calls: list[tuple[int, int]] = []
    bs = BatchSize(16)
    bs.run(20, fake_forward(5, calls))
    calls.clear()
    bs.run(20, fake_forward(5, calls))
    assert all(stop - start <= 4 for start, stop in calls)  # no failed try the second time
    assert len(calls) == 5


def test_runtime_error_saying_out_of_memory_backs_off_too() -> None:
    calls: list[tuple[int, int]] = []
    out = run_batched(9, 8, fake_forward(3, calls, RuntimeError))
    assert [i for c in out for i in c] == list(range(9))
    assert is_out_of_memory(MemoryError()) and not is_out_of_memory(RuntimeError("shape mismatch"))


def test_out_of_memory_at_size_one_is_one_clear_user_error() -> None:
    with pytest.raises(BatchMemoryError, match=r"batch of 1 \(CRIS masks\)") as err:
        run_batched(4, 4, fake_forward(0, []), what="CRIS masks")
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_other_errors_are_not_retried() -> None:
    calls: list[tuple[int, int]] = []

    def fn(start: int, stop: int) -> None:
        calls.append((start, stop))
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_batched(10, 8, fn)
    assert calls == [(0, 8)]


def test_bad_start_and_auto_size_on_cpu() -> None:
    with pytest.raises(ValueError):
        BatchSize(0)
    assert auto_batch_size(1e9, "cpu", 32) == 32  # free memory unknown: the cap, backed off later if needed
    assert auto_batch_size(0, "cpu", 7) == 7
