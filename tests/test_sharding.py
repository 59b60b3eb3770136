"""Content-defined shards: stable keys, so adding or changing a file recomputes one shard."""

from __future__ import annotations

from storage.recordings import duplicate_rows, plan_shards
from storage.sources import SourceItem


def _items(n: int, changed: str | None = None) -> list[SourceItem]:
    return [
        SourceItem(f"utt{i:05d}", f"/d/utt{i:05d}.wav", "v2" if f"utt{i:05d}" == changed else "v1")
        for i in range(n)
    ]


def test_every_item_lands_in_exactly_one_shard() -> None:
    shards = plan_shards(_items(1000), 32, {"min_duration_s": 0.08})
    ids = [i.id for s in shards for i in s.items]
    assert sorted(ids) == [i.id for i in _items(1000)]
    assert 10 < len(shards) < 100


def test_adding_a_file_changes_one_shard_key() -> None:
    params = {"min_duration_s": 0.08}
    before = {s.key for s in plan_shards(_items(1000), 32, params)}
    extra = [*_items(1000), SourceItem("utt00500x", "/d/new.wav", "v1")]
    after = {s.key for s in plan_shards(extra, 32, params)}
    assert len(after - before) <= 2  # the shard it joins (split in two if it is a boundary)
    assert len(before - after) == 1


def test_changing_bytes_or_params_changes_keys() -> None:
    params = {"min_duration_s": 0.08}
    base = {s.key for s in plan_shards(_items(200), 32, params)}
    assert (
        len(base - {s.key for s in plan_shards(_items(200, changed="utt00007"), 32, params)}) == 1
    )
    assert not base & {s.key for s in plan_shards(_items(200), 32, {"min_duration_s": 0.1})}


def test_duplicates_point_at_the_first_id() -> None:
    rows = duplicate_rows([("b", "h1"), ("a", "h1"), ("c", "h2"), ("d", "h1")])
    assert rows == [
        {"sha256": "h1", "id": "b", "duplicate_of": "a"},
        {"sha256": "h1", "id": "d", "duplicate_of": "a"},
    ]
