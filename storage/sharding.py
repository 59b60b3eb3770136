"""Content-defined grouping of work items into shards (one task each), shared by every stage.

A shard ends after an item whose key hashes to 0 modulo ``target/2`` once it holds at least
``target/2`` items (or at ``2·target``), so boundaries follow the items' keys, not their positions:
adding or changing one item changes one shard (two when it becomes a boundary).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def content_groups(items: Sequence[T], key: Callable[[T], str], target: int) -> list[list[T]]:
    """Items sorted by ``key`` and cut into groups of ``target/2 … 2·target`` at content boundaries
    (the last group holds whatever remains, so it may be smaller)."""
    low, high = max(1, target // 2), max(1, 2 * target)
    groups: list[list[T]] = []
    current: list[T] = []
    for item in sorted(items, key=key):
        current.append(item)
        if (stable_hash(key(item)) % low == 0 and len(current) >= low) or len(current) >= high:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups
