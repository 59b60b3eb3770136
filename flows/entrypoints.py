"""Deployment entrypoints (prefect.yaml): the flows with the Dask task runner injected from env.

``SPIRITFLOW_DASK_ADDRESS`` points a deployment at an existing cluster; otherwise each run starts
a LocalCluster of ``SPIRITFLOW_WORKERS`` processes (default: one per core).
"""

from __future__ import annotations

import os

from flows.corpus import build_corpus_flow
from flows.ingest import ingest_flow
from flows.runtime import ClusterOptions, task_runner
from flows.stsp import stsp_flow
from flows.units import tokenize_flow


def cluster_from_env() -> ClusterOptions:
    workers = os.environ.get("SPIRITFLOW_WORKERS")
    return ClusterOptions(
        dask_address=os.environ.get("SPIRITFLOW_DASK_ADDRESS") or None,
        workers=int(workers) if workers else None,
    )


ingest = ingest_flow.with_options(task_runner=task_runner(cluster_from_env()))
tokenize = tokenize_flow.with_options(task_runner=task_runner(cluster_from_env(), gpu_stage=True))
build_corpus = build_corpus_flow.with_options(task_runner=task_runner(cluster_from_env()))
stsp = stsp_flow.with_options(task_runner=task_runner(cluster_from_env(), gpu_stage=True))
