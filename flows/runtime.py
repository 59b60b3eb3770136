"""Launch-time wiring: one Prefect API server per run, and the injected Dask task runner.

Dask worker processes inherit ``PREFECT_API_URL`` from the environment, so all of them report to
the one server started here instead of each starting a temporary server of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "DASK_LOGGING__DISTRIBUTED": "warning",
}


@dataclass(frozen=True)
class ClusterOptions:
    """Where tasks run: an existing cluster, or a LocalCluster of ``workers`` processes."""

    dask_address: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    use_gpu: bool | None = None  # None: use GPUs when CUDA and dask-cuda are both present


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Use ``PREFECT_API_URL`` if set, else start one local server for this run (and stop it after,
    with flow-run heartbeats off: nothing outlives the run to watch for them)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        yield existing
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    os.environ["PREFECT_API_URL"] = server.api_url
    # Flow-run heartbeats let a long-lived server notice crashed runs; this server ends with the
    # run, and Prefect's heartbeat thread makes every flow run wait out its 1 s sleep at exit
    # (measured: an empty flow 1.09 s with heartbeats, 0.12 s without).
    settings = {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    try:
        with temporary_settings(updates=settings):
            yield server.api_url
            _drain_prefect_clients()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _drain_prefect_clients() -> None:
    """Send queued logs and events before the server goes (else exit waits on retries to a dead URL)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler, APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    logging.getLogger("prefect").handlers = [
        h for h in logging.getLogger("prefect").handlers if not isinstance(h, APILogHandler)
    ]


def gpus_available() -> bool:
    """CUDA GPUs visible and dask-cuda installed (both are needed for a LocalCUDACluster)."""
    try:
        import dask_cuda  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# glibc settings for worker processes (read by glibc at process start, so set before they spawn).
WORKER_MALLOC_ENV = {
    "MALLOC_MMAP_MAX_": 0,  # big tensors from the heap, reused, instead of fresh mmapped pages
    "MALLOC_ARENA_MAX": 1,  # Dask runs tasks in a thread: keep its allocations in the main heap
    "MALLOC_TRIM_THRESHOLD_": 512 * 2**20,  # give memory back only beyond 512 MiB of free top
}


def tune_worker_malloc() -> None:
    """Give the workers a glibc allocator that reuses freed activations instead of faulting in pages.

    Dask's nannies set ``MALLOC_TRIM_THRESHOLD_=65536``, and glibc serves every block over 32 MiB
    with a fresh mmap either way, so each large activation tensor of the speech models was
    page-faulted (and zeroed) in again: 4.3 M page faults for 151 s of audio. Measured here, the
    same expressive extraction in a Dask worker: 31.8 s with Dask's settings, 26.2 s with these
    (0.8 M faults), for 0.6–2 GB more peak RSS with full-size models (freed blocks stay in the
    heap; the most for long recordings). Our workers hold models and a few large arrays.
    """
    import dask

    dask.config.set(
        {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}
    )


def task_runner(options: ClusterOptions, gpu_stage: bool = False) -> Any:
    """The DaskTaskRunner for a flow: an address, a LocalCUDACluster, or a process LocalCluster."""
    from prefect_dask import DaskTaskRunner

    if options.dask_address:  # someone else's workers: their environment is theirs to set
        return DaskTaskRunner(address=options.dask_address)
    tune_worker_malloc()  # before the cluster's nannies spawn their workers
    use_gpu = gpu_stage and (options.use_gpu if options.use_gpu is not None else gpus_available())
    if use_gpu:
        return DaskTaskRunner(
            cluster_class="dask_cuda.LocalCUDACluster",
            cluster_kwargs={"dashboard_address": ":0", "threads_per_worker": 1},
        )
    workers = options.workers or max(1, os.cpu_count() or 1)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": options.threads_per_worker,
            "processes": True,
            "dashboard_address": ":0",
        },
    )


def stage_runner() -> Any:
    """The task runner for a stage run as a subflow: the parent flow's Dask cluster.

    Prefect gives a subflow its own default runner (threads in the flow process), so without this
    `tokenize`'s ingest and units tasks, and `stsp`'s, would never reach the Dask workers.
    """
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if isinstance(runner, DaskTaskRunner):
        return DaskTaskRunner(address=runner.client.scheduler.address)
    return runner.duplicate() if runner is not None else None
