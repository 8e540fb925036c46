"""`--help` of every job lists every setting: each config field has a flag, each setting a job reads is a flag,
and the flags of config fields take their defaults from the config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from core.static_dynamic.config import StaticDynamicConfig
from core.vcc.config import VCCConfig, VCCDebugConfig
from core.vtcd import RosettaConfig, VTCDConfig
from precompute import cli
from precompute import vtcd as vtcd_job

REPO = Path(__file__).resolve().parents[1]
# subcommand -> (its config, flag names that differ from --<field-name>)
ANALYSES = {
    "static-dynamic": (StaticDynamicConfig, cli.STATIC_DYNAMIC_FLAGS),
    "vtcd": (VTCDConfig, {**vtcd_job.VTCD_FLAGS, "feature": "--features"}),
    "rosetta": (RosettaConfig, {}),
    "vcc": (VCCConfig, {}),
    "vcc-debug": (VCCDebugConfig, cli.VCC_DEBUG_FLAGS),
}
# subcommand -> the job modules whose `args.<name>` reads must be flags of it
JOBS = {"predict": ["predict"], "train": ["train"], "static-dynamic": ["static_dynamic"], "vtcd": ["vtcd"],
        "rosetta": ["vtcd"], "vcc": ["vcc"], "vcc-debug": ["vcc_debug"], "demo": ["demo"], "runs": []}
# functions of precompute/vtcd.py that only the other of its two subcommands runs
OTHER = {"vtcd": ("find_run", "build_rosetta_config", "run_rosetta"), "rosetta": ("build_config", "run")}


def subparsers() -> dict:
    return cli._subparsers(cli.build_parser())


@pytest.mark.parametrize("command", list(ANALYSES))
def test_help_lists_every_config_field(command: str) -> None:
    config, flags = ANALYSES[command]
    text = subparsers()[command].format_help()
    missing = [f.name for f in dataclasses.fields(config)
               if not re.search(rf"{re.escape(flags.get(f.name, '--' + f.name.replace('_', '-')))}\b", text)]
    assert missing == []


def _reads(command: str) -> set[str]:
    """Names the job reads as ``args.<name>`` or ``getattr(args, "<name>", ...)``."""
    names: set[str] = set()
    for module in JOBS[command]:
        src = (REPO / "precompute" / f"{module}.py").read_text()
        for fn in OTHER.get(command, ()):  # drop the other subcommand's functions
            src = re.sub(rf"\ndef {fn}\(.*?(?=\ndef |\Z)", "\n", src, flags=re.S)
        names |= set(re.findall(r"\bargs\.(\w+)", src)) | set(re.findall(r"getattr\(args, \"(\w+)\"", src))
    body = re.search(rf"\ndef cmd_{command.replace('-', '_')}\(.*?(?=\ndef |\Z)",
                     (REPO / "precompute" / "cli.py").read_text(), re.S)
    return names | set(re.findall(r"\bargs\.(\w+)", body.group(0) if body else ""))


@pytest.mark.parametrize("command", list(JOBS))
def test_every_setting_a_job_reads_is_a_flag(command: str) -> None:
    dests = {a.dest for a in subparsers()[command]._actions} | {"command"}
    assert _reads(command) - dests == set()


def test_shared_flags_of_config_fields_default_to_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VCCConfig, "seed", 7)
    monkeypatch.setattr(VTCDConfig, "seed", 8)
    monkeypatch.setattr(VTCDConfig, "feature", "query")
    parser = cli.build_parser()
    assert parser.parse_args(["vcc", "--model", "m"]).seed == 7
    vtcd = parser.parse_args(["vtcd", "--model", "m"])
    assert vtcd.seed == 8 and vtcd.features == "queries"
    assert "default queries" in " ".join(cli._subparsers(parser)["vtcd"].format_help().split())
