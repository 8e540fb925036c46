"""Errors that carry a message meant for the person running the tool.

The CLI turns any :class:`UserError` into one line on stderr and exit status 2;
the dashboard shows it as an error box. Everything else is a bug.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the problem and, where it can, what to do."""


class ModelSpecError(UserError):
    """A model spec string that cannot be resolved into a model."""


class LayerError(UserError):
    """A layer name that the model does not have."""


class DataError(UserError):
    """An unreadable or unsuitable image, video or folder."""


class RunError(UserError):
    """An artifact run that cannot be read: the message names the run and the problem."""


class ConfigError(UserError):
    """A setting of an analysis config (a ``core.*.config`` dataclass) that is out of range.

    ``field`` is the config field, ``problem`` the rest of the line ("must be at least 2, not 1"); the
    message is ``"<field> <problem>"``. The CLI raises it again naming the flag instead of the field.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across worker processes
        return ConfigError, (self.field, self.problem)
