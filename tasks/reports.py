"""Run reports: each flow's summary Markdown plus its stage's figures as OUT/reports/<stage>.{md,html}."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
from prefect import task

from models.report import html_page
from models.stage_reports import corpus_figures, ingest_figures, units_figures
from schemas.tables import CORPUS_STATS, RECORDINGS, REJECTS, UNITS
from storage.layout import RunLayout
from storage.parquet import exists, read_table, table_part_urls, write_bytes_atomic
from tasks.ingest import TASK_OPTIONS

FIGURE_ROWS = 5000  # unit histograms are drawn from the first rows of big tables


def _head(layout: RunLayout, name: str, spec: Any, columns: list[str]) -> pa.Table:
    """Up to FIGURE_ROWS rows of a committed table, one part at a time (empty if not committed)."""
    opts = layout.storage_options
    if not exists(layout.manifest(name), opts):
        return spec.schema.empty_table().select(columns)
    tables, rows = [], 0
    for url in table_part_urls(layout.table(name), opts):
        part = read_table(url, spec, columns=columns, storage_options=opts)
        tables.append(part)
        rows += part.num_rows
        if rows >= FIGURE_ROWS:
            break
    return (
        pa.concat_tables(tables).slice(0, FIGURE_ROWS)
        if tables
        else spec.schema.empty_table().select(columns)
    )


def _figures(layout: RunLayout, stage: str) -> list[tuple[str, str]]:
    if stage == "ingest":
        rec = _head(layout, RECORDINGS.name, RECORDINGS, ["duration_s", "sample_rate"])
        rej = _head(layout, REJECTS.name, REJECTS, ["reason"])
        reasons = Counter(rej["reason"].to_pylist())
        return ingest_figures(
            rec["duration_s"].to_pylist(), reasons, rec["sample_rate"].to_pylist()
        )
    if stage == "units":
        units = _head(layout, UNITS.name, UNITS, ["hubert", "pitch", "style", "duration_s"])
        streams = {s: [v or [] for v in units[s].to_pylist()] for s in ("hubert", "pitch", "style")}
        return units_figures(streams, units["duration_s"].to_pylist())
    if stage == "corpus":
        return corpus_figures(
            _head(layout, CORPUS_STATS.name, CORPUS_STATS, CORPUS_STATS.columns).to_pylist()
        )
    raise ValueError(f"no report figures for stage {stage!r}")


@task(name="write-report", **TASK_OPTIONS)
def write_run_report(layout: RunLayout, stage: str, title: str, markdown: str) -> str:
    """Write reports/<stage>.md and the self-contained reports/<stage>.html; returns the HTML URL."""
    opts = layout.storage_options
    write_bytes_atomic(markdown.encode(), layout.report(f"{stage}.md"), opts)
    page = html_page(title, markdown, _figures(layout, stage))
    return write_bytes_atomic(page.encode(), layout.report(f"{stage}.html"), opts)
