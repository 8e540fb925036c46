"""Checkpoint stores: the memory store, the null store and the run writer keep the same contract."""

from __future__ import annotations

import numpy as np
import pytest

from core.artifacts import RunWriter
from core.checkpoint import CheckpointStore, MemoryStore, NullStore


@pytest.fixture(params=["memory", "writer"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryStore()
    return RunWriter(tmp_path, "predictions", model={"spec": "m"}, data={}, config={})


def test_stores_round_trip_json_and_arrays(store):
    assert isinstance(store, CheckpointStore)
    assert not store.has("parts/a.json") and not store.has("parts/b.npz")
    store.save_json("parts/a.json", {"x": np.float32(1.5), "v": np.arange(3)})
    store.save_arrays("parts/b.npz", w=np.eye(2, dtype=np.float32))
    assert store.has("parts/a.json") and store.has("parts/b.npz")
    assert store.load_json("parts/a.json") == {"x": 1.5, "v": [0, 1, 2]}
    np.testing.assert_array_equal(store.load_arrays("parts/b.npz")["w"], np.eye(2))


def test_loaded_values_are_copies(store):
    store.save_json("a.json", {"x": [1]})
    store.load_json("a.json")["x"].append(2)
    assert store.load_json("a.json") == {"x": [1]}


def test_stores_refuse_object_arrays(store):
    with pytest.raises(TypeError, match="object"):
        store.save_arrays("o.npz", o=np.array([{"a": 1}], dtype=object))


def test_null_store_keeps_nothing():
    s = NullStore()
    s.save_json("a.json", 1)
    s.save_arrays("b.npz", x=np.zeros(1))
    assert not s.has("a.json") and not s.has("b.npz")
    assert isinstance(s, CheckpointStore)
