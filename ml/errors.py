"""The one exception type users see, with what went wrong and how to fix it."""

from __future__ import annotations


class MLError(Exception):
    """An error caused by input, configuration or state the user can fix.

    Parameters
    ----------
    message
        What happened, naming the object (model, table, column, file) concerned.
    hint
        What to do next, ideally a command to run.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"
