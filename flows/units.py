"""The units flow (recordings → units on Dask workers) and the scheduled tokenize flow (ingest → units)."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, unmapped

from flows.ingest import ingest_flow
from flows.params import DecodeParams, TokenizeParams, UnitsParams
from flows.progress import completed_with_progress, publish_summary
from flows.runtime import stage_runner
from schemas.expectations import prepare_in_background
from schemas.tables import UNITS
from storage.layout import RunLayout
from tasks.decode import decode_units, list_units
from tasks.f0_stats import f0_stats_shard, finalize_f0_stats, load_f0_speaker_stats, plan_f0_stats
from tasks.reports import write_run_report
from tasks.units import UnitsSummary, carry_units, extract_units, finalize_units, plan_units


@flow(name="units", persist_result=False)
def units_flow(params: UnitsParams) -> UnitsSummary:
    started = time.time()
    prepare_in_background(UNITS)  # overlaps GE's import with extraction
    layout = RunLayout.at(params.out, params.storage_options)
    recordings = params.recordings or layout.table("recordings")
    info = {
        "checkpoints": params.checkpoints,
        "variant": params.variant,
        "device": params.device,
        "hubert_layer": params.hubert_layer,
        "quantizer": params.quantizer,
        "f0_extractor": params.f0_extractor,
        "max_batch": params.max_batch,
        "batch_seconds": params.batch_seconds,
        "threads": params.threads_per_task,
    }
    speaker_f0 = speaker_f0_means(params, layout, recordings, info)
    plan = plan_units(layout, recordings, params.model_dump(), speaker_f0)
    info.update(
        checkpoints=plan.checkpoints, key_params=plan.key_params, fingerprints=plan.fingerprints
    )
    carried = carry_units.submit(plan.carry, layout)
    # Longest shards first: workers finish together instead of one long shard running alone at the end.
    shards = sorted(plan.shards, key=lambda shard: -sum(job.duration_s for job in shard[1]))
    futures = extract_units.map(
        [k for k, _ in shards], [j for _, j in shards], unmapped(layout), unmapped(info)
    )
    outcomes = list(completed_with_progress(futures, "units shards"))
    summary = finalize_units(layout, plan, outcomes, carried.result(), started)
    markdown = publish_summary(
        "units-summary",
        f"units ({params.variant})",
        [
            {
                "recordings": summary.recordings,
                "rows": summary.rows,
                "extracted": summary.extracted,
                "reused": summary.reused_rows,
                "rejected": summary.rejected,
                "hours": f"{summary.audio_hours:.3f}",
            }
        ],
        summary.tables,
    )
    summary.tables["report_html"] = write_run_report(
        layout, "units", f"units run report ({params.variant})", markdown
    )
    return summary


def speaker_f0_means(
    params: UnitsParams, layout: RunLayout, recordings: str, info: dict[str, Any]
) -> dict[str, float] | None:
    """Speaker → mean F0 under ``--f0-norm speaker``: from the given file, or measured on workers."""
    if params.f0_norm != "speaker":
        return None
    if params.f0_speaker_stats:
        return load_f0_speaker_stats(params.f0_speaker_stats)
    plan = plan_f0_stats(layout, recordings, params.model_dump())
    futures = f0_stats_shard.map(
        [k for k, _ in plan.shards],
        [j for _, j in plan.shards],
        unmapped(layout),
        unmapped({**info, "checkpoints": plan.checkpoints}),
    )
    parts = list(completed_with_progress(futures, "f0 stats shards"))
    return finalize_f0_stats(layout, plan, parts)


@flow(name="tokenize", persist_result=False)
def tokenize_flow(params: TokenizeParams) -> dict[str, object]:
    ingest = ingest_flow.with_options(task_runner=stage_runner())(params.ingest())
    units = units_flow.with_options(task_runner=stage_runner())(params.units())
    return {"ingest": ingest.as_dict(), "units": units.as_dict()}


@flow(name="decode", persist_result=False)
def decode_flow(params: DecodeParams) -> dict[str, object]:
    """Resynthesise every units row to OUT/audio/<id>.wav with the checkpoint's vocoder."""
    layout = RunLayout.at(params.out, params.storage_options)
    items = list_units(params.units, params.storage_options)
    ids = [i for i, _ in items]
    groups = [ids[k : k + params.shard_size] for k in range(0, len(ids), params.shard_size)]
    futures = decode_units.map(
        groups,
        unmapped(params.units),
        unmapped(layout),
        unmapped(params.checkpoints),
        unmapped(params.speaker),
        unmapped(params.device),
    )
    results = list(completed_with_progress(futures, "decode shards"))
    return {
        "recordings": len(ids),
        "written": sum(r["written"] for r in results),
        "kept": sum(r["kept"] for r in results),
        "audio_s": sum(r["samples"] for r in results) / 16_000,
        "audio": f"{layout.root}/audio",
    }
