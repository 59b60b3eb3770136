"""The ingest flow: plan → one task per shard (on Dask workers) → dedupe, validate, commit, report."""

from __future__ import annotations

import time

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from flows.params import IngestParams
from flows.progress import completed_with_progress, publish_summary
from schemas.expectations import prepare_in_background
from schemas.tables import DUPLICATES, RECORDINGS, REJECTS
from storage.layout import RunLayout
from tasks.ingest import (
    IngestSummary,
    finalize_ingest,
    ingest_shard,
    plan_ingest,
    write_plan_rejects,
)
from tasks.reports import write_run_report


def _cache_params(params: IngestParams) -> dict[str, object]:
    """Only what changes the rows goes into shard keys (not the output root or shard size)."""
    return {"min_duration_s": params.min_duration_s}


@flow(name="ingest", persist_result=False, validate_parameters=True)
def ingest_flow(params: IngestParams) -> IngestSummary:
    started = time.time()
    prepare_in_background(RECORDINGS, REJECTS, DUPLICATES)  # GE import overlaps the shards
    layout = RunLayout.at(params.out, params.storage_options)
    cache = _cache_params(params)
    plan, shards = plan_ingest(
        params.source, params.data_root, params.storage_options, params.shard_size, cache
    )
    plan_rejects = write_plan_rejects.submit(plan.rejects, layout, cache)
    futures = ingest_shard.map(shards, unmapped(layout), unmapped(params.min_duration_s))
    outcomes = list(completed_with_progress(futures, "ingest shards"))
    extra = plan_rejects.result()
    if extra is not None:
        outcomes.append(extra)
    summary = finalize_ingest(layout, outcomes, plan.ignored, started)
    markdown = _publish(summary)
    summary.tables["report_html"] = write_run_report(
        layout, "ingest", "ingest run report", markdown
    )
    return summary


def _publish(summary: IngestSummary) -> str:
    rows = [{"reason": r, "files": n} for r, n in summary.reasons.items()]
    create_table_artifact(
        rows or [{"reason": "-", "files": 0}],
        key="ingest-rejects",
        description="rejected files by reason",
    )
    return publish_summary(
        "ingest-summary",
        "ingest",
        [
            {
                "good": summary.good,
                "rejected": summary.rejected,
                "hours": f"{summary.hours:.3f}",
                "duplicates": summary.duplicates,
                "shards computed": summary.shards_computed,
                "shards reused": summary.shards_reused,
            }
        ],
        summary.tables,
    )
