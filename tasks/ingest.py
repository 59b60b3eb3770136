"""Ingest tasks: plan the source, ingest one shard, then dedupe + validate + commit the tables.

Each shard's output path is its content key, so a shard whose output exists is reused (after a
crash, a rerun, or a Dask recompute) and nothing is computed twice. Prefect's own result cache is
not used: it would trust a cached result even after the output files were deleted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from schemas.expectations import validate_frame
from schemas.tables import DUPLICATES, RECORDINGS, REJECTS
from storage.layout import RunLayout
from storage.options import filesystem
from storage.parquet import commit_table, read_parts, to_arrow, write_atomic, write_bytes_atomic
from storage.recordings import (
    Shard,
    duplicate_rows,
    ingest_items,
    plan_reject_rows,
    plan_shards,
    shard_key,
)
from storage.sources import Plan, PlanReject, plan_source
from tasks.common import RETRIES, RETRY_DELAYS, publish_data_docs, retry_on_transient


@dataclass
class ShardOutcome:
    key: str
    recordings: str
    rejects: str
    good: int
    reasons: dict[str, int]
    audio_s: float
    reused: bool


@dataclass
class IngestSummary:
    out: str
    good: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    hours: float = 0.0
    duplicates: int = 0
    ignored_files: int = 0
    shards: int = 0
    shards_computed: int = 0
    shards_reused: int = 0
    tables: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TASK_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_on_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


@task(name="plan-ingest", **TASK_OPTIONS)
def plan_ingest(
    source: str,
    data_root: str | None,
    storage_options: dict[str, Any],
    shard_size: int,
    params: dict[str, Any],
) -> tuple[Plan, list[Shard]]:
    plan = plan_source(source, data_root, storage_options)
    shards = plan_shards(plan.items, shard_size, params)
    get_run_logger().info(
        "planned %d files in %d shards, %d rejected at planning, %d non-audio files ignored",
        len(plan.items),
        len(shards),
        len(plan.rejects),
        plan.ignored,
    )
    return plan, shards


@task(name="write-plan-rejects", **TASK_OPTIONS)
def write_plan_rejects(
    rejects: list[PlanReject], layout: RunLayout, params: dict[str, Any]
) -> ShardOutcome | None:
    """Rejects found while planning (bad rows, missing files, paths outside the root).

    Takes only the rejects, not the plan: Prefect walks every task argument looking for futures,
    which for a 10,000-file plan cost 2.7 s per run.
    """
    if not rejects:
        return None
    rows = plan_reject_rows(rejects)
    key = "plan-" + shard_key([], {**params, "rejects": rows})
    url = layout.shard(REJECTS.name, key)
    write_atomic(to_arrow(rows, REJECTS), url, layout.storage_options)
    return ShardOutcome(key, "", url, 0, dict(Counter(r["reason"] for r in rows)), 0.0, False)


def _existing(layout: RunLayout, shard: Shard) -> ShardOutcome | None:
    rec_url = layout.shard(RECORDINGS.name, shard.key)
    rej_url = layout.shard(REJECTS.name, shard.key)
    fs, rec_path = filesystem(rec_url, layout.storage_options)
    if not fs.exists(rec_path):
        return None
    _, rej_path = filesystem(rej_url, layout.storage_options)
    durations = pq.read_table(rec_path, columns=["duration_s"], filesystem=fs).column(0).to_pylist()
    reasons = pq.read_table(rej_path, columns=["reason"], filesystem=fs).column(0).to_pylist()
    return ShardOutcome(
        shard.key,
        rec_url,
        rej_url,
        len(durations),
        dict(Counter(reasons)),
        float(sum(durations)),
        True,
    )


@task(name="ingest-shard", **TASK_OPTIONS)
def ingest_shard(shard: Shard, layout: RunLayout, min_duration_s: float) -> ShardOutcome:
    """Inspect the shard's files and write its recordings + rejects shards (rejects first)."""
    reused = _existing(layout, shard)
    if reused is not None:
        get_run_logger().info(
            "shard %s: output exists, reused (%d files)", shard.key, len(shard.items)
        )
        return reused
    rows, rejects = ingest_items(shard.items, layout.storage_options, min_duration_s)
    rej_url = write_atomic(
        to_arrow(rejects, REJECTS), layout.shard(REJECTS.name, shard.key), layout.storage_options
    )
    rec_url = write_atomic(
        to_arrow(rows, RECORDINGS), layout.shard(RECORDINGS.name, shard.key), layout.storage_options
    )
    return ShardOutcome(
        shard.key,
        rec_url,
        rej_url,
        len(rows),
        dict(Counter(r["reason"] for r in rejects)),
        float(sum(r["duration_s"] for r in rows)),
        False,
    )


@task(name="finalize-ingest", **TASK_OPTIONS)
def finalize_ingest(
    layout: RunLayout, outcomes: list[ShardOutcome], ignored: int, started: float
) -> IngestSummary:
    """Find duplicate content, validate every table with GE, commit the tables, write the report."""
    opts = layout.storage_options
    rec_parts = [o.recordings for o in outcomes if o.recordings]
    rej_parts = [o.rejects for o in outcomes if o.rejects]
    recordings = read_parts(rec_parts, RECORDINGS, opts).to_pandas()
    rejects = read_parts(rej_parts, REJECTS, opts).to_pandas()
    dup_rows = (
        duplicate_rows(zip(recordings["id"], recordings["sha256"], strict=True))
        if len(recordings)
        else []
    )
    validate_frame(recordings, RECORDINGS)
    validate_frame(rejects, REJECTS)
    duplicates = to_arrow(dup_rows, DUPLICATES)
    validate_frame(duplicates.to_pandas(), DUPLICATES)
    dup_url = layout.shard(
        DUPLICATES.name, shard_key([], {"duplicates": dup_rows}, stage="duplicates")
    )
    write_atomic(duplicates, dup_url, opts)
    tables = {
        "recordings": commit_table(
            layout.table("recordings"), RECORDINGS, rec_parts, len(recordings), opts
        ),
        "rejects": commit_table(layout.table("rejects"), REJECTS, rej_parts, len(rejects), opts),
        "duplicates": commit_table(
            layout.table("duplicates"), DUPLICATES, [dup_url], len(dup_rows), opts
        ),
    }
    reasons: Counter[str] = Counter()
    for o in outcomes:
        reasons.update(o.reasons)
    shards = [o for o in outcomes if o.recordings]
    summary = IngestSummary(
        out=layout.root,
        good=len(recordings),
        rejected=sum(reasons.values()),
        reasons=dict(sorted(reasons.items())),
        hours=float(sum(o.audio_s for o in outcomes)) / 3600.0,
        duplicates=len(dup_rows),
        ignored_files=ignored,
        shards=len(shards),
        shards_computed=sum(not o.reused for o in shards),
        shards_reused=sum(o.reused for o in shards),
        tables={name: url.rsplit("/", 1)[0] for name, url in tables.items()},
        seconds=round(time.time() - started, 2),
    )
    report = layout.report("ingest-summary.json")
    write_bytes_atomic(json.dumps(summary.as_dict(), indent=1).encode(), report, opts)
    summary.tables["report"] = report
    docs = publish_data_docs(layout)
    if docs:
        summary.tables["data_docs"] = docs
    return summary
