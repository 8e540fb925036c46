"""The benchmark scripts' results table: rows land in the right section and table."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.results_table import add_row

DOC = """# Results

## Alpha (`x`)

| a | b |
|---|---|
| 1 | 2 |

## Beta

text

| c |
|---|

| d |
|---|
| 4 |
"""


def test_rows_go_to_the_end_of_the_chosen_table(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(DOC)
    add_row("Alpha", "| 3 | 4 |", path=path)
    add_row("Beta", "| 5 |", table=0, path=path)
    add_row("Beta", "| 6 |", path=path)
    lines = path.read_text().splitlines()
    assert lines[lines.index("| 1 | 2 |") + 1] == "| 3 | 4 |"
    assert lines[lines.index("| c |") + 2] == "| 5 |"
    assert lines[-1] == "| 6 |" and lines[-2] == "| 4 |"


def test_an_unknown_section_or_table_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(DOC)
    with pytest.raises(KeyError, match="Gamma"):
        add_row("Gamma", "| x |", path=path)
    with pytest.raises(KeyError, match="no table 2"):
        add_row("Beta", "| x |", table=2, path=path)
    assert path.read_text() == DOC


def test_scale_models_evenly_keeps_the_deepest_layer() -> None:
    from benchmarks.scale_models import evenly

    names = [f"l{i}" for i in range(16)]
    assert evenly(names, 1) == ["l15"] and evenly(names, 20) == names
    assert evenly(names, 4) == ["l0", "l5", "l10", "l15"]


@pytest.mark.filterwarnings("ignore")
def test_scale_models_runs_each_model_at_its_tiniest_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/scale_models.py at tiny counts (a tiny VideoMAE; ResNet-50's real shape at 64 px):
    every stage timed, a forward limit measured, a table printed, the goals left open."""
    pytest.importorskip("transformers")
    from benchmarks.scale_models import main

    common = ["--device", "cpu", "--limit-reps", "1"]
    (vtcd,) = main(["--models", "videomae", "--vmae-tiny", "--clips", "2", "--vmae-layers", "1", "--vmae-heads", "1",
                    "--masks", "4", "--vtcd-batch", "4", *common])
    assert {"features", "tubelets", "cnmf", "cris_concepts", "cris_heads"} <= set(vtcd.stages)
    (vcc,) = main(["--models", "resnet50", "--image-size", "64", "--images", "2", "--resnet-layers", "2",
                   "--random-images", "6", "--random-sets", "2", "--random-set-size", "2", "--vcc-batch", "16",
                   "--min-segment-size", "16", "--precision", "bf16", *common])
    assert set(vcc.stages) == {"forward", "segmentation", "concepts", "CAVs", "ITCAV"}
    assert vcc.counts["layers"] == 2 and vcc.precision == "bf16"
    for row in (vtcd, vcc):
        assert row.rate > 0 and row.limit > 0 and row.peak_host_mib > 0 and row.goal.startswith("open")
    table = capsys.readouterr().out
    assert "| `videomae` |" in table and "| `resnet50` (min_segment_size 16) |" in table
