"""One small exception hierarchy: every error names the thing (file, row, column, table)."""

from __future__ import annotations


class SpiritflowError(Exception):
    """Base class for errors spiritflow raises on purpose (the CLI prints them without a traceback)."""


class UsageError(SpiritflowError):
    """Bad command-line or parameter input (exit code 2)."""


class ManifestError(SpiritflowError):
    """A manifest or source cannot be used as a whole (unreadable, no path column, duplicate ids)."""


class BadAudioError(SpiritflowError):
    """One input file is not usable audio; ``reason`` is the rejects-table reason code."""

    def __init__(self, uri: str, reason: str, message: str) -> None:
        super().__init__(f"{uri}: {reason}: {message}")
        self.uri = uri
        self.reason = reason
        self.message = message


class TableValidationError(SpiritflowError):
    """A table failed its Great Expectations suite; the message names table, column and rows."""

    def __init__(self, table: str, failures: list[str]) -> None:
        lines = "\n  ".join(failures)
        super().__init__(f"table {table!r} failed validation:\n  {lines}")
        self.table = table
        self.failures = failures


class StorageOptionError(UsageError):
    """A ``--storage-option`` that is malformed or would leak a secret."""
