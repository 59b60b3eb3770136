"""Atomic Parquet shards, table commit manifests and readers that take a folder or a file.

A shard is written under a hidden temporary name and renamed into place (local, memory) or
uploaded in one piece (object stores, where an object appears only once complete), so a crash
never leaves a half-written shard that a reader or a rerun could mistake for a finished one.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import SpiritflowError
from schemas.tables import TableSpec, schema_version
from storage.layout import MANIFEST_NAME, join
from storage.options import filesystem, is_local, is_object_store


def to_arrow(rows: list[dict[str, Any]] | pa.Table, spec: TableSpec) -> pa.Table:
    """Rows → an arrow table with exactly ``spec``'s schema; a bad value names its column."""
    if isinstance(rows, pa.Table):
        return _cast(rows, spec)
    columns = {}
    for fld in spec.schema:
        values = [row.get(fld.name) for row in rows]
        try:
            columns[fld.name] = pa.array(values, type=fld.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
            raise SpiritflowError(f"table {spec.name!r} column {fld.name!r}: {exc}") from exc
    return pa.Table.from_pydict(columns, schema=spec.schema)


def _cast(table: pa.Table, spec: TableSpec) -> pa.Table:
    missing = [n for n in spec.schema.names if n not in table.column_names]
    if missing:
        raise SpiritflowError(f"table {spec.name!r}: missing column(s) {', '.join(missing)}")
    table = table.select(spec.schema.names)
    try:
        return table.cast(spec.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SpiritflowError(f"table {spec.name!r}: {exc}") from exc


def write_atomic(
    table: pa.Table, url: str, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write ``table`` to ``url`` so that readers see either nothing or the whole file."""
    fs, path = filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0]
    if is_object_store(fs):
        pq.write_table(table, path, filesystem=fs)
        return url
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex}"
    try:
        pq.write_table(table, tmp, filesystem=fs)
        if is_local(fs):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)
    return url


def write_bytes_atomic(
    data: bytes, url: str, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Same guarantee as ``write_atomic`` for small files (manifests, reports)."""
    fs, path = filesystem(url, storage_options)
    if is_object_store(fs):
        fs.pipe_file(path, data)
        return url
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex}"
    fs.pipe_file(tmp, data)
    if is_local(fs):
        os.replace(tmp, path)
    else:
        fs.mv(tmp, path)
    return url


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    return bool(fs.exists(path))


def commit_table(
    table_url: str,
    spec: TableSpec,
    parts: Iterable[str],
    rows: int,
    storage_options: Mapping[str, Any] | None = None,
    prune: bool = True,
) -> str:
    """Record which shards make up the table (``_table.json``) and drop superseded shard folders.

    After a commit, pandas / DuckDB / pyarrow reading the folder see exactly the committed rows.
    """
    relative = sorted(_relative(table_url, p) for p in parts)
    manifest = {
        "table": spec.name,
        "schema_version": spec.version,
        "rows": rows,
        "parts": relative,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    url = join(table_url, MANIFEST_NAME)
    write_bytes_atomic(json.dumps(manifest, indent=1).encode(), url, storage_options)
    if prune:
        _prune(table_url, {p.split("/", 1)[0] for p in relative}, storage_options)
    return url


def _relative(table_url: str, part_url: str) -> str:
    prefix = table_url.rstrip("/") + "/"
    if not part_url.startswith(prefix):
        raise SpiritflowError(f"shard {part_url} is not inside table {table_url}")
    return part_url[len(prefix) :]


def _prune(table_url: str, live_dirs: set[str], storage_options: Mapping[str, Any] | None) -> None:
    fs, path = filesystem(table_url, storage_options)
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "directory" and name not in live_dirs and not name.startswith("_"):
            fs.rm(entry["name"], recursive=True)


def table_parts(url: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Paths (in the filesystem) of the Parquet files a folder or a single file holds."""
    fs, path = filesystem(url, storage_options)
    if fs.isfile(path):
        return [path]
    if not fs.isdir(path):
        raise SpiritflowError(f"{url}: no such table (neither a Parquet file nor a folder)")
    manifest = f"{path.rstrip('/')}/{MANIFEST_NAME}"
    if fs.exists(manifest):
        listed = json.loads(fs.cat_file(manifest))["parts"]
        return [f"{path.rstrip('/')}/{p}" for p in listed]
    found = [
        p
        for p in sorted(fs.find(path))
        if p.endswith(".parquet")
        and not any(s.startswith((".", "_")) for s in p[len(path) :].split("/"))
    ]
    return found


def read_table(
    url: str,
    spec: TableSpec | None = None,
    columns: list[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read a table from a folder (its committed shards) or one Parquet file, cast to ``spec``."""
    fs, _ = filesystem(url, storage_options)
    parts = table_parts(url, storage_options)
    tables = []
    for part in parts:
        pf = pq.ParquetFile(part, filesystem=fs)
        if spec is not None:
            version = schema_version(pf.schema_arrow)
            if version and version != spec.version:
                raise SpiritflowError(
                    f"{part}: {spec.name} schema version {version}, this code reads {spec.version}"
                )
        tables.append(pf.read(columns=columns))
    if not tables:
        if spec is None:
            raise SpiritflowError(f"{url}: table has no shards")
        schema = (
            spec.schema if columns is None else pa.schema([spec.schema.field(c) for c in columns])
        )
        return schema.empty_table()
    table = pa.concat_tables(tables, promote_options="permissive")
    if spec is not None and columns is None:
        table = _cast(table, spec)
    return table


def read_parts(
    parts: Iterable[str], spec: TableSpec, storage_options: Mapping[str, Any] | None = None
) -> pa.Table:
    """Shard files (URLs) of one table, concatenated and cast to ``spec`` (empty if there are none)."""
    tables = [read_table(p, spec, storage_options=storage_options) for p in parts]
    return pa.concat_tables(tables) if tables else spec.schema.empty_table()


def table_part_urls(url: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Like ``table_parts`` but as URLs with the table's protocol, ready to read or commit again."""
    parts = table_parts(url, storage_options)
    if "://" not in url:
        return parts
    protocol = url.split("://", 1)[0]
    return [f"{protocol}://{p.lstrip('/')}" for p in parts]
