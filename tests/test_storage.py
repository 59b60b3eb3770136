"""URL layout, storage options, atomic shards, commit manifests, readers, and S3 via moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.errors import SpiritflowError, StorageOptionError
from schemas.tables import REJECTS
from storage import parquet as sp
from storage.layout import RunLayout
from storage.options import parse_storage_options, redact
from storage.parquet import commit_table, read_table, to_arrow, write_atomic


def _rejects(n: int, start: int = 0) -> pa.Table:
    rows = [
        {
            "uri": f"f{i}.wav",
            "id": f"f{i}",
            "stage": "ingest",
            "reason": "missing",
            "error": "gone",
            "source_row": i,
        }
        for i in range(start, start + n)
    ]
    return to_arrow(rows, REJECTS)


@pytest.mark.parametrize(
    "root, expected",
    [
        ("s3://bucket/x", "s3://bucket/x/recordings/k1/part-00003.parquet"),
        ("memory://x/", "memory://x/recordings/k1/part-00003.parquet"),
        ("/data/runs/x", "/data/runs/x/recordings/k1/part-00003.parquet"),
    ],
)
def test_layout_builds_every_url_from_the_root(root: str, expected: str) -> None:
    layout = RunLayout.at(root)
    assert layout.shard("recordings", "k1", 3) == expected
    assert layout.manifest("rejects").endswith("/rejects/_table.json")
    assert layout.report("ingest-summary.json").endswith("/reports/ingest-summary.json")


def test_relative_local_root_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert RunLayout.at("runs/x").root == str(tmp_path / "runs" / "x")


def test_storage_options_parse_nested_and_typed() -> None:
    opts = parse_storage_options(
        ["anon=false", "client_kwargs.endpoint_url=http://127.0.0.1:9", "max_concurrency=4"]
    )
    assert opts == {
        "anon": False,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
        "max_concurrency": 4,
    }


@pytest.mark.parametrize(
    "pair", ["secret=abc", "key=AKIA", "client_kwargs.aws_secret_access_key=x", "noequals"]
)
def test_storage_options_refuse_secrets_and_garbage(pair: str) -> None:
    with pytest.raises(StorageOptionError):
        parse_storage_options([pair])


def test_redact_hides_credentials_from_the_environment() -> None:
    assert "testing-secret-value" not in redact("boom with testing-secret-value inside")


def test_atomic_write_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t" / "k" / "part-00000.parquet"

    def crash(table: pa.Table, where: str, filesystem: Any = None) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk vanished")

    monkeypatch.setattr(sp.pq, "write_table", crash)
    with pytest.raises(OSError):
        write_atomic(_rejects(2), str(target))
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_replaces_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "t" / "k" / "part-00000.parquet"
    write_atomic(_rejects(2), str(target))
    write_atomic(_rejects(3), str(target))
    assert pq.read_table(target).num_rows == 3
    assert [p.name for p in target.parent.iterdir()] == ["part-00000.parquet"]


def test_readers_take_a_folder_or_a_file_and_ignore_temp_files(tmp_path: Path) -> None:
    table = tmp_path / "rejects"
    write_atomic(_rejects(2), str(table / "a" / "part-00000.parquet"))
    write_atomic(_rejects(3, 10), str(table / "b" / "part-00000.parquet"))
    (table / "b" / ".part-00001.parquet.tmp-123").write_bytes(b"junk")
    assert read_table(str(table), REJECTS).num_rows == 5
    assert read_table(str(table / "a" / "part-00000.parquet"), REJECTS).num_rows == 2
    with pytest.raises(SpiritflowError, match="no such table"):
        read_table(str(tmp_path / "nope"), REJECTS)


def test_commit_names_live_shards_and_prunes_superseded(tmp_path: Path) -> None:
    table = tmp_path / "rejects"
    old = write_atomic(_rejects(4), str(table / "old" / "part-00000.parquet"))
    new = write_atomic(_rejects(2), str(table / "new" / "part-00000.parquet"))
    assert read_table(str(table), REJECTS).num_rows == 6
    commit_table(str(table), REJECTS, [new], rows=2)
    manifest = json.loads((table / "_table.json").read_text())
    assert manifest["parts"] == ["new/part-00000.parquet"] and manifest["schema_version"] == 1
    assert not Path(old).exists()
    assert read_table(str(table), REJECTS).num_rows == 2
    assert len(pd.read_parquet(table)) == 2  # plain pandas sees exactly the committed rows


def test_reader_refuses_another_schema_version(tmp_path: Path) -> None:
    table = _rejects(1)
    meta = dict(table.schema.metadata)
    meta[b"spiritflow.schema_version"] = b"99"
    path = tmp_path / "r.parquet"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(SpiritflowError, match="schema version 99"):
        read_table(str(path), REJECTS)


def test_memory_filesystem_round_trip() -> None:
    layout = RunLayout.at("memory://roundtrip")
    url = write_atomic(_rejects(3), layout.shard("rejects", "k"))
    commit_table(layout.table("rejects"), REJECTS, [url], rows=3)
    assert read_table(layout.table("rejects"), REJECTS).to_pylist() == _rejects(3).to_pylist()


def test_s3_round_trip_through_moto(s3_server: dict[str, Any], s3_bucket: str) -> None:
    layout = RunLayout.at(f"s3://{s3_bucket}/run", s3_server)
    url = write_atomic(_rejects(3), layout.shard("rejects", "k1"), s3_server)
    stale = write_atomic(_rejects(1), layout.shard("rejects", "k0"), s3_server)
    commit_table(layout.table("rejects"), REJECTS, [url], rows=3, storage_options=s3_server)
    back = read_table(layout.table("rejects"), REJECTS, storage_options=s3_server)
    assert back.to_pylist() == _rejects(3).to_pylist()
    assert not sp.exists(stale, s3_server)
    df = pd.read_parquet(url, storage_options=s3_server)
    assert list(df["id"]) == ["f0", "f1", "f2"]
