"""Settings of a report (:func:`core.report.build_report`): the caps that keep a report small."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import ConfigError

_LIMITS = {"max_clips": (0, 200), "max_exemplars": (0, 50), "max_examples": (0, 50), "max_images": (0, 100),
           "max_classes": (1, 1000), "max_clip_kb": (1, 100_000), "max_rows": (1, 100_000)}


@dataclass(frozen=True)
class ReportConfig:
    """What a report embeds. Every cap bounds the file's size; a clip over ``max_clip_kb`` is left out and
    said so in the report."""

    max_clips: int = field(default=6, metadata={"help": "tubelet clips (VTCD top concepts, Rosetta tuples) "
                                                         "embedded per run"})
    max_exemplars: int = field(default=3, metadata={"help": "exemplar pictures per concept of a concept graph"})
    max_examples: int = field(default=2, metadata={"help": "static/dynamic example pairs embedded per run"})
    max_images: int = field(default=4, metadata={"help": "misclassified images of a vcc-debug run (and "
                                                         "thumbnails of a predictions run)"})
    max_classes: int = field(default=8, metadata={"help": "classes of a vcc run shown with their graph"})
    max_clip_kb: int = field(default=400, metadata={"help": "largest clip embedded, in KiB"})
    max_rows: int = field(default=40, metadata={"help": "rows of a table shown in the report (the CSV download "
                                                        "holds them all)"})
    compress_plotly: bool = field(default=True, metadata={
        "help": "embed plotly.js gzip-compressed (about 2 MB instead of 4.8 MB; opened with the browser's "
                "DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+)"})
    title: str = field(default="", metadata={"help": "the report's title (default: the runs' ids)"})

    def __post_init__(self) -> None:
        for name, (lo, hi) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, f"must be a whole number, not {value!r}")
            if not lo <= value <= hi:
                raise ConfigError(name, f"must be between {lo} and {hi}, not {value}")
        if len(self.title) > 200:
            raise ConfigError("title", "must be at most 200 characters")
