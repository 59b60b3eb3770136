"""The STSP flow: manifests → tokenize speech prompts → prompts → generate → score → metrics + report."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from flows.ingest import ingest_flow
from flows.params import IngestParams, StspParams, UnitsParams
from flows.progress import completed_with_progress, publish_summary
from flows.runtime import stage_runner
from flows.units import units_flow
from schemas.expectations import prepare_in_background
from schemas.tables import GENERATIONS, METRICS, SCORES
from storage.layout import RunLayout, join
from tasks.stsp import (
    StspSummary,
    build_jobs,
    finalize_stsp,
    generate_shard,
    plan_stsp,
    score_shard,
    write_stsp_report,
)


@flow(name="stsp", persist_result=False)
def stsp_flow(params: StspParams) -> StspSummary:
    started = time.time()
    prepare_in_background(GENERATIONS, SCORES, METRICS)
    layout = RunLayout.at(params.out, params.storage_options)
    info = params.task_params()
    plan = plan_stsp(layout, info)
    if plan.speech_inputs:  # speech prompts become units through the tokenize stages (cached)
        ingest_flow.with_options(task_runner=stage_runner())(
            IngestParams(
                source=plan.speech_inputs,
                data_root=join(params.data_root, "data"),
                out=params.out,
                storage_options=params.storage_options,
            )
        )
        units_flow.with_options(task_runner=stage_runner())(
            UnitsParams(
                out=params.out,
                storage_options=params.storage_options,
                checkpoints=params.checkpoints,
                variant=plan.variant,  # type: ignore[arg-type]
                device=params.device,
            )
        )
    shards = build_jobs(layout, plan, info)
    generated = generate_shard.map(
        [k for k, _, _ in shards],
        [d for _, d, _ in shards],
        [j for _, _, j in shards],
        unmapped(layout),
        unmapped(info),
    )
    # Scoring starts as each generation shard finishes (results, not futures, are passed on).
    done, scoring = [], []
    for shard in completed_with_progress(generated, "stsp generation shards"):
        done.append(shard)
        scoring.append(score_shard.submit(shard, layout, info))
    score_parts = list(completed_with_progress(scoring, "stsp scoring shards"))
    summary, metrics, generations = finalize_stsp(layout, plan, done, score_parts, started)
    _report(layout, summary, metrics, generations)
    return summary


def _report(
    layout: RunLayout,
    summary: StspSummary,
    metrics: list[dict[str, Any]],
    generations: list[dict[str, Any]],
) -> None:
    markdown, summary.tables["report_html"] = write_stsp_report(
        layout, summary.scorers, summary.paper_classifier, metrics, generations
    )
    create_table_artifact(
        [
            {
                "direction": m["direction"],
                "dataset": m["dataset"],
                "n": m["n"],
                "accuracy": round(m["mean"], 4),
                "std": round(m["std"], 4),
                "ci95": f"{m['ci_low']:.2f}-{m['ci_high']:.2f}",
                "scorer": m["scorer"],
            }
            for m in metrics
            if m["seed"] is None
        ],
        key="stsp-accuracy",
        description="STSP accuracy per direction and dataset (mean over seeds)",
    )
    publish_summary(
        "stsp-summary",
        "stsp",
        [
            {
                "generations": summary.generations,
                "scored": summary.scored,
                "shards computed": summary.shards_computed,
                "shards reused": summary.shards_reused,
                "rejected rows": summary.rejected,
            }
        ],
        summary.tables,
        note=markdown.split("\n", 1)[1],
    )
