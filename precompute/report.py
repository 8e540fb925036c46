"""`precompute report RUN [RUN ...] --out FILE.html`: one self-contained HTML report of finished runs
(:func:`core.report.build_report`); runs of one kind side by side on shared axes."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from core.artifacts import open_run
from core.errors import UserError
from core.report import KINDS, ReportConfig, build_report


class ReportArgError(UserError):
    """Bad input of the report command."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's flags: the runs, ``--out``, and one flag per field of :class:`ReportConfig`."""
    from precompute.config_args import add_config_arguments

    p.add_argument("runs", nargs="+", metavar="RUN", help=f"run folders ({', '.join(KINDS)})")
    # dest is not "out": the shared check of --out wants an artifact folder, this one is a file
    p.add_argument("--out", dest="report_out", required=True, help="the HTML file to write")
    add_config_arguments(p.add_argument_group("report settings (core.report.ReportConfig)"), ReportConfig,
                         exclude=("compress_plotly",))
    p.add_argument("--plain-js", dest="compress_plotly", action="store_false",
                   help="embed plotly.js uncompressed (4.8 MB more; for browsers without DecompressionStream)")


def run(args: argparse.Namespace) -> str:
    """Write the report; returns its path. Bad input is one :class:`UserError` line."""
    from precompute.config_args import config_from_args

    config = config_from_args(ReportConfig, args)
    out = Path(args.report_out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportArgError(f"--out {out}: the report is an HTML file; give a name ending in .html")
    if out.is_dir():
        raise ReportArgError(f"--out {out} is a folder; give a file name ending in .html")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ReportArgError(f"--out {out}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ReportArgError(f"--out {out}: not writable; choose a file in a folder you can write to")
    runs = []
    for ref in args.runs:
        if not Path(ref).is_dir():
            raise ReportArgError(f"{ref}: not a run folder (give the folder of a finished run, "
                                 "e.g. artifacts/vtcd/<run id>)")
        runs.append(open_run(ref))

    def progress(done: int, total: int, label: str) -> None:
        print(f"report: {done}/{total} {label}", file=sys.stderr, flush=True)

    text = build_report(runs, config, progress=progress)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is for sharing
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"report: {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return str(out)
