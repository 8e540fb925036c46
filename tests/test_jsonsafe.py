"""NaN and infinities become JSON null in one place (core.jsonsafe), for every writer of run JSON."""

from __future__ import annotations

import importlib
import json
import math
from typing import Any

import numpy as np
import pytest

from core.artifacts import RunWriter
from core.jsonsafe import nan_to_null, null_to_nan, num


def strict(text: str) -> Any:
    """``text`` parsed as strict JSON (NaN, Infinity and -Infinity refused)."""
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_helpers_turn_non_finite_numbers_into_null_and_back() -> None:
    value = {"a": [1.0, float("nan"), np.float32("inf")], "b": np.array([np.nan, 2.0]), "c": (3, "x"), "d": None}
    assert nan_to_null(value) == {"a": [1.0, None, None], "b": [None, 2.0], "c": [3, "x"], "d": None}
    assert num(np.float32(0.5)) == 0.5 and num(3) == 3.0 and isinstance(num(3), float)
    assert num(float("-inf")) is None and num(np.nan) is None
    assert math.isnan(null_to_nan(None)) and null_to_nan(2) == 2.0


def test_writer_writes_numpy_nan_as_null(tmp_path) -> None:
    with RunWriter(tmp_path, "predictions", model="m", data="d", config={}) as w:
        path = w.write_json("x.json", {"scalar": np.float32("nan"), "array": np.array([1.5, np.inf]),
                                       "int": np.int64(4), "fine": np.float32(0.25)})
    assert strict(path.read_text()) == {"scalar": None, "array": [1.5, None], "int": 4, "fine": 0.25}


def test_every_analysis_uses_the_one_helper() -> None:
    # by module path: core.vtcd exports functions named like some of its modules
    vcc_jsonsafe, diagnostics, ground_truth, rosetta, vtcd_store = (importlib.import_module(f"core.{m}") for m in (
        "vcc.jsonsafe", "vtcd.diagnostics", "vtcd.ground_truth", "vtcd.rosetta", "vtcd.store"))

    assert vcc_jsonsafe.nan_to_null is nan_to_null and vcc_jsonsafe.null_to_nan is null_to_nan
    assert vtcd_store.num is num and ground_truth.num is num and rosetta.num is num
    assert diagnostics.nan_to_null is nan_to_null


def test_attention_diagnostics_are_strict_json() -> None:
    from core.vtcd.diagnostics import AttentionDiagnostics, BlockDiagnostics

    block = BlockDiagnostics(layer="blocks.0", attention_module="blocks.0.attn", entropy=float("nan"),
                             entropy_heads=[0.5, float("nan")], branch_delta=0.1, branch_abs=float("inf"),
                             keys_zero_delta=0.0, keys_zero_abs=0.0, keys_removed_delta=None, keys_removed_abs=None)
    d = AttentionDiagnostics(metric="probability", rho=0.5, n_draws=2, n_videos=1, baseline=float("nan"),
                             blocks=[block]).to_dict()
    back = strict(json.dumps(d))
    assert back["baseline"] is None and back["n_draws"] == 2
    assert back["blocks"][0]["entropy"] is None and back["blocks"][0]["entropy_heads"] == [0.5, None]
    assert back["blocks"][0]["branch_abs"] is None and back["blocks"][0]["branch_delta"] == pytest.approx(0.1)
