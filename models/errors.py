"""Checkpoint problems, named by file (raised at load time, before any audio is processed)."""

from __future__ import annotations

from schemas.errors import SpiritflowError


class CheckpointError(SpiritflowError):
    """A checkpoint file is missing, corrupt, of the wrong format or the wrong variant."""
