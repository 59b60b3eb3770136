"""The build-corpus flow: units + transcripts (+ text) → interleaved SpiRit-LM training samples."""

from __future__ import annotations

import time

from prefect import flow, unmapped

from flows.params import BuildCorpusParams
from flows.progress import completed_with_progress, publish_summary
from schemas.expectations import prepare_in_background
from schemas.tables import CORPUS
from storage.layout import RunLayout
from tasks.corpus import (
    CorpusSummary,
    build_recording_shard,
    build_text_shard,
    finalize_corpus,
    plan_corpus,
)
from tasks.reports import write_run_report


@flow(name="build-corpus", persist_result=False)
def build_corpus_flow(params: BuildCorpusParams) -> CorpusSummary:
    started = time.time()
    prepare_in_background(CORPUS)  # overlaps GE's import with alignment and building
    layout = RunLayout.at(params.out, params.storage_options)
    plan = plan_corpus(layout, params.model_dump())
    recordings = build_recording_shard.map(
        [k for k, _ in plan.recording_shards],
        [jobs for _, jobs in plan.recording_shards],
        unmapped(layout),
        unmapped(plan.info),
    )
    texts = build_text_shard.map(
        [k for k, _ in plan.text_shards],
        [d for _, d in plan.text_shards],
        unmapped(layout),
        unmapped(plan.info),
    )
    outcomes = list(completed_with_progress([*recordings, *texts], "corpus shards"))
    summary = finalize_corpus(layout, plan, outcomes, params.model_dump(), started)
    rows = [
        {
            "kind": s["kind"],
            "samples": s["samples"],
            "tokens": s["tokens"],
            "text tokens": s["text_tokens"],
            "speech tokens": s["speech_tokens"],
            "speech s": f"{s['speech_seconds']:.1f}",
            "speech tokens/s (paper)": f"{(s['speech_tokens_per_s'] or 0):.1f} (≈{s['expected_tokens_per_s']:.0f})",
        }
        for s in summary.stats
    ]
    note = (
        f"rejected: {summary.rejected}; shards computed {summary.shards_computed}, "
        f"reused {summary.shards_reused}"
    )
    markdown = publish_summary(
        "corpus-summary", f"corpus ({summary.variant})", rows, summary.tables, note
    )
    summary.tables["report_html"] = write_run_report(
        layout, "corpus", f"corpus run report ({summary.variant})", markdown
    )
    return summary
