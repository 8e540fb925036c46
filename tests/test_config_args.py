"""CLI flags generated from a config dataclass: names, types, defaults, help, config files, errors."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from core.errors import ConfigError
from precompute.config_args import add_config_arguments, config_from_args


@dataclass(frozen=True)
class Toy:
    n_items: int = field(default=3, metadata={"help": "items per thing"})
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    name: str | None = field(default=None, metadata={"help": "optional name"})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "speed"})
    fractions: tuple[float, ...] = field(default=(0.0, 1.0), metadata={"help": "fractions"})
    grid: tuple[int, int] = field(default=(2, 3), metadata={"help": "grid"})
    layers: tuple[str, ...] | None = field(default=None, metadata={"help": "layers"})
    fancy: bool = field(default=False, metadata={"help": "be fancy"})
    lam: float = field(default=0.25, metadata={"help": "threshold"})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ConfigError("n_items", f"must be at least 1, not {self.n_items}")
        if not -1 <= self.lam <= 1:
            raise ConfigError("lam", f"must be between -1 and 1, not {self.lam}")


FLAGS = {"lam": "--lambda"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    p.add_argument("--seed", type=int, default=7)
    add_config_arguments(p, Toy, exclude=("seed",), flags=FLAGS)
    return p


def test_defaults_come_from_the_dataclass() -> None:
    args = parser().parse_args([])
    got = config_from_args(Toy, args, flags=FLAGS)
    assert dataclasses.replace(got, seed=0) == Toy()
    assert got.seed == 7  # an excluded field is still read from args (the shared --seed)


def test_types_nargs_choices_and_renamed_flags() -> None:
    args = parser().parse_args(["--n-items", "5", "--rate", "2", "--name", "x", "--mode", "slow", "--fractions",
                                "0", "0.5", "--grid", "4", "5", "--layers", "a", "b", "--fancy", "--lambda", "-0.5"])
    got = config_from_args(Toy, args, flags=FLAGS)
    assert got == Toy(n_items=5, rate=2.0, name="x", mode="slow", fractions=(0.0, 0.5), grid=(4, 5),
                      layers=("a", "b"), fancy=True, lam=-0.5, seed=7)
    assert parser().parse_args(["--no-fancy"]).fancy is False
    with pytest.raises(SystemExit):
        parser().parse_args(["--mode", "medium"])
    with pytest.raises(SystemExit):
        parser().parse_args(["--grid", "4"])


def test_help_lists_every_field_with_its_default() -> None:
    text = parser().format_help()
    for flag in ("--n-items", "--rate", "--name", "--mode", "--fractions", "--grid", "--layers", "--fancy",
                 "--lambda"):
        assert flag in text
    assert "items per thing (default: 3)" in text and "(default: 0.0 1.0)" in text and "--lam " not in text


def test_validation_names_the_flag_on_the_command_line_and_the_field_in_python() -> None:
    with pytest.raises(ConfigError, match=r"^--lambda must be between -1 and 1, not 2.0$"):
        config_from_args(Toy, parser().parse_args(["--lambda", "2"]), flags=FLAGS)
    with pytest.raises(ConfigError, match=r"^n_items must be at least 1"):
        Toy(n_items=0)


def test_unknown_field_names_are_refused() -> None:
    with pytest.raises(TypeError, match="no field"):
        add_config_arguments(argparse.ArgumentParser(), Toy, exclude=("nope",))


def test_config_files_use_the_field_names(tmp_path) -> None:
    """The CLI's --config loader reads keys by dest, so generated flags take the same names."""
    from precompute import cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: r3d-motion\nremoval_fractions: [0, 0.5]\nlambda: 0.25\nremoval: true\n")
    args = cli.parse_args(["static-dynamic", "--config", str(cfg)])
    assert args.removal_fractions == [0.0, 0.5] and args.lam == 0.25 and args.removal is True
    cfg.write_text("model: r3d-motion\nremoval: 3\n")
    with pytest.raises(cli.CliError, match="removal must be true or false"):
        cli.parse_args(["static-dynamic", "--config", str(cfg)])


def test_demo_lists_command_lines_and_imports_no_job(tmp_path) -> None:
    """precompute.demo and precompute.cli no longer import each other: demo only lists argv lists,
    each of which the CLI parses (flags checked, nothing run)."""
    import ast
    from pathlib import Path

    from precompute import cli, demo

    tree = ast.parse(Path(demo.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.split(".")[0] == "precompute" for m in imported), imported
    argvs = demo.commands(tmp_path, "cpu")
    assert argvs and any(a[0] == "static-dynamic" for a in argvs)
    for argv in argvs:
        args = cli.parse_args(argv)
        assert args.command in cli.COMMANDS and args.out == str(tmp_path)


def test_demo_adds_the_tubelet_runs_once_both_checkpoints_ship(tmp_path, monkeypatch) -> None:
    """The plain-tubelet transformers' demo runs (issue 16) appear when both checkpoints exist, and parse."""
    from precompute import cli, demo

    models = tmp_path / "models"
    monkeypatch.setattr(demo, "ASSETS_MODELS", models)
    assert demo.tubelet_runs(tmp_path, []) == []
    for name in ("tubelet_vit-motion", "tubelet_vit-occlusion"):
        (models / name).mkdir(parents=True)
        (models / name / "model.json").write_text("{}")
    argvs = demo.vtcd_runs(tmp_path, "cpu", which="tubelet")
    assert [a[0] for a in argvs] == ["vtcd", "vtcd", "vtcd", "rosetta"]
    runs = [a[a.index("--run-id") + 1] for a in argvs]
    assert runs == ["tubelet_vit-motion-synthetic", "tubelet_vit-occlusion-synthetic",
                    "tubelet_vit-motion-on-occlusion", "tubelet_vit-motion-vs-occlusion"]
    assert argvs[3][argvs[3].index("--runs") + 1:][:2] == [str(tmp_path / "vtcd" / r) for r in runs[1:3]]
    for argv in argvs:
        args = cli.parse_args(argv)
        assert args.command in cli.COMMANDS and args.out == str(tmp_path)
