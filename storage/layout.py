"""The one place that builds URLs: every table, shard, report and audio path of a run.

A run root is a local path (``./runs/x``), ``s3://bucket/x`` or ``memory://x``; tables live at
``ROOT/<table>/``, shards at ``ROOT/<table>/<content-key>/part-NNNNN.parquet`` and the table's
commit manifest at ``ROOT/<table>/_table.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import fsspec

from storage.options import filesystem

MANIFEST_NAME = "_table.json"


def normalize_root(root: str) -> str:
    """Absolute local paths, URLs unchanged, no trailing slash."""
    if "://" in root:
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


def join(base: str, *parts: str) -> str:
    """Join URL/path segments with ``/`` (fsspec URLs are POSIX-style everywhere)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class RunLayout:
    """Where a run's outputs go; built from ``--out`` and ``--storage-option``s."""

    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def at(cls, root: str, storage_options: dict[str, Any] | None = None) -> RunLayout:
        return cls(normalize_root(root), dict(storage_options or {}))

    def table(self, name: str) -> str:
        return join(self.root, name)

    def shard_dir(self, table: str, key: str) -> str:
        return join(self.root, table, key)

    def shard(self, table: str, key: str, part: int = 0) -> str:
        return join(self.root, table, key, f"part-{part:05d}.parquet")

    def manifest(self, table: str) -> str:
        return join(self.root, table, MANIFEST_NAME)

    def report(self, name: str) -> str:
        return join(self.root, "reports", name)

    def audio(self, item_id: str, ext: str = "wav") -> str:
        return join(self.root, "audio", f"{item_id}.{ext}")

    def fs(self) -> fsspec.AbstractFileSystem:
        return filesystem(self.root, self.storage_options)[0]
