"""Shared task settings: retry only infrastructure errors; shards themselves are the cache."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from storage.retry import is_transient

RETRIES = 2
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
