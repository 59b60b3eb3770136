"""Shared task settings: retry only infrastructure errors; shards themselves are the cache."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import TableValidationError
from schemas.expectations import data_docs_site, validate_frame
from schemas.tables import TableSpec
from storage.layout import RunLayout, join
from storage.parquet import read_parts, write_bytes_atomic
from storage.retry import is_transient

RETRIES = 2
DOCS_SKIP = ("static/images/", "static/fonts/")  # logos and fonts: 4 MB the pages do without
RETRY_DELAYS = [1, 5]
VALIDATE_ROWS = 50_000  # rows per Great Expectations batch: a big table is never loaded whole


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry I/O and worker-loss errors, never bad input or bugs."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        return is_transient(exc)
    return False


_MODEL_LOCK = threading.Lock()
_MODELS: dict[tuple[Any, ...], Any] = {}


def cached_model(key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
    """One model per worker process and key (tasks on the threads of one worker share it)."""
    with _MODEL_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load()
        return _MODELS[key]


def publish_data_docs(layout: RunLayout) -> str | None:
    """Copy the GE Data Docs of this process (suites + the validations it ran) to reports/data-docs/.

    Called by the finalize tasks, where a stage's tables are validated; returns the index URL.
    """
    started = time.time() - 1.0
    site = data_docs_site()
    if site is None:
        return None
    target = layout.report("data-docs")
    for dirpath, _, names in os.walk(site):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), site)
            if rel.startswith(DOCS_SKIP):
                continue
            # pages rendered now (a worker's site also holds earlier runs' pages), and the styles
            if (
                not rel.startswith("static/")
                and os.path.getmtime(os.path.join(dirpath, name)) < started
            ):
                continue
            with open(os.path.join(dirpath, name), "rb") as fh:
                write_bytes_atomic(fh.read(), join(target, rel), layout.storage_options)
    return join(target, "index.html")


def validate_parts(
    parts: list[str], spec: TableSpec, storage_options: dict[str, Any] | None = None
) -> pa.Table:
    """Run ``spec``'s GE suite over a table's parts in batches of about ``VALIDATE_ROWS`` rows and
    check its row ids unique across all of them. Returns only the ids (and durations, when the
    table has them) for the summary: the whole table is never in memory at once."""
    columns = [spec.row_id] + (["duration_s"] if "duration_s" in spec.columns else [])
    indexes: list[pa.Table] = []
    batch: list[pa.Table] = []
    for part in parts:
        table = read_parts([part], spec, storage_options)
        indexes.append(table.select(columns))
        batch.append(table)
        if sum(t.num_rows for t in batch) >= VALIDATE_ROWS:
            validate_frame(pa.concat_tables(batch).to_pandas(), spec)
            batch = []
    if batch:
        validate_frame(pa.concat_tables(batch).to_pandas(), spec)
    index = pa.concat_tables(indexes) if indexes else spec.schema.empty_table().select(columns)
    ids = index[spec.row_id]
    if pc.count_distinct(ids).as_py() != len(ids):
        repeated = [v["values"] for v in pc.value_counts(ids).to_pylist() if v["counts"] > 1]
        raise TableValidationError(
            spec.name,
            [
                f"{spec.row_id}: {len(repeated)} value(s) in more than one shard, e.g. {repeated[:3]}"
            ],
        )
    return index
