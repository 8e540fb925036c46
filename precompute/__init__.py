"""Offline jobs that run analyses and write artifact runs: `python -m precompute --help`."""
