"""Shared task settings: retry only infrastructure errors; shards themselves are the cache."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from schemas.expectations import data_docs_site
from storage.layout import RunLayout, join
from storage.parquet import write_bytes_atomic
from storage.retry import is_transient

RETRIES = 2
DOCS_SKIP = ("static/images/", "static/fonts/")  # logos and fonts: 4 MB the pages do without
RETRY_DELAYS = [1, 5]


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
