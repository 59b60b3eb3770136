"""Progress for long maps: a rich bar on a terminal, log lines elsewhere, and a Prefect progress artifact."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LOG_EVERY_S = 10.0


def completed_with_progress(futures: Sequence[Any], label: str) -> Iterator[Any]:
    """Yield each future's result as it completes, reporting progress to the terminal and Prefect UI."""
    total = len(futures)
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, key=None, description=f"{label}: 0/{total}")
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    done = 0
    last_log = time.monotonic()
    with Progress(*columns, disable=not sys.stderr.isatty(), transient=False) as bar:
        tid = bar.add_task(label, total=total)
        for future in as_completed(list(futures)):
            result = future.result()
            done += 1
            bar.update(tid, completed=done)
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S or done == total:
                last_log = now
                logger.info("%s: %d/%d", label, done, total)
                update_progress_artifact(artifact, progress=100.0 * done / max(total, 1))
            yield result


def summary_markdown(
    title: str, rows: Sequence[dict[str, Any]], tables: dict[str, str], note: str = ""
) -> str:
    """A stage's summary: a Markdown table of ``rows``, an optional note, links to its tables."""
    columns = list(rows[0]) if rows else []
    lines = [f"# {title}", ""]
    if columns:
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
        lines.append("")
    if note:
        lines += [note, ""]
    lines += [f"- **{name}**: `{url}`" for name, url in tables.items()]
    return "\n".join(lines)


def publish_summary(
    key: str, title: str, rows: Sequence[dict[str, Any]], tables: dict[str, str], note: str = ""
) -> str:
    """The summary as a Prefect Markdown artifact (one per stage, shown in the UI); returns it."""
    markdown = summary_markdown(title, rows, tables, note)
    create_markdown_artifact(key=key, description=f"{title} summary", markdown=markdown)
    return markdown
