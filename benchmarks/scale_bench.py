"""Scale benchmark: orchestration overhead and worker scaling of the ingest flow on many short files.

Run: ``.venv/bin/python benchmarks/scale_bench.py [--files 1000]`` (writes benchmarks/results/scale.json).
On the same generated folder of short clips (0.3–2 s, WAV/FLAC, 16/44.1 kHz), in one run:
  plain_loop     the flow's own task functions (plan, every shard, finalize with GE + commit) called
                 in a loop in this process: no Prefect engine, no Dask (one core)
  flow_1worker   `ingest` as a Prefect flow on a running LocalCluster of 1 worker process × 1 thread
                 (the same work and cores as the loop: the difference is orchestration)
  flow_2workers  the same on 2 worker processes (this machine's cores)
Targets (issue 6): overhead = flow_1worker / plain_loop − 1 ≤ 10 %; flow_1worker / flow_2workers ≥ 1.7×.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / ".data"


def noisy_tone(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """A sine of random pitch (100–400 Hz) with a little noise: a cheap stand-in clip."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
    return (wave + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_short_corpus(n: int, seed: int = 1) -> Path:
    folder = DATA / f"short-{n}"
    if (folder / ".done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        rate = int(rng.choice([16_000, 16_000, 44_100]))
        wave = noisy_tone(rng, rng.uniform(0.3, 2.0), rate)
        ext = "flac" if i % 4 == 0 else "wav"
        sf.write(folder / f"clip{i:05d}.{ext}", wave, rate)
    (folder / ".done").write_text("ok")
    return folder


def plain_loop(folder: Path, out: Path, shard_size: int) -> float:
    """The ingest flow's steps, called directly (``.fn``) in one process."""
    from prefect.logging import disable_run_logger

    from storage.layout import RunLayout
    from tasks.ingest import finalize_ingest, ingest_shard, plan_ingest, write_plan_rejects

    shutil.rmtree(out, ignore_errors=True)
    layout = RunLayout.at(str(out))
    cache = {"min_duration_s": 0.08}
    started = time.perf_counter()
    with disable_run_logger():
        plan, shards = plan_ingest.fn(str(folder), None, {}, shard_size, cache)
        extra = write_plan_rejects.fn(plan.rejects, layout, cache)
        outcomes = [ingest_shard.fn(shard, layout, 0.08) for shard in shards]
        if extra is not None:
            outcomes.append(extra)
        finalize_ingest.fn(layout, outcomes, plan.ignored, time.time())
    return time.perf_counter() - started


def flow_run(folder: Path, out: Path, shard_size: int, address: str) -> float:
    from flows.ingest import ingest_flow
    from flows.params import IngestParams
    from flows.runtime import ClusterOptions, task_runner

    shutil.rmtree(out, ignore_errors=True)
    params = IngestParams(source=str(folder), out=str(out), shard_size=shard_size)
    flow = ingest_flow.with_options(task_runner=task_runner(ClusterOptions(dask_address=address)))
    started = time.perf_counter()
    summary = flow(params)
    elapsed = time.perf_counter() - started
    assert summary.good > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per configuration")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = parser.parse_args()
    folder = make_short_corpus(args.files)
    from distributed import LocalCluster

    from flows.runtime import prefect_api, tune_worker_malloc

    results: dict[str, float] = {}
    with prefect_api():
        plain_loop(folder, DATA / "scale-warm", args.shard_size)  # imports, GE context, page cache
        results["plain_loop_s"] = min(
            plain_loop(folder, DATA / "scale-loop", args.shard_size) for _ in range(args.repeats)
        )
        tune_worker_malloc()
        for workers in (1, 2):
            with LocalCluster(
                n_workers=workers, threads_per_worker=1, dashboard_address=":0"
            ) as cluster:
                flow_run(folder, DATA / "scale-warm", args.shard_size, cluster.scheduler_address)
                results[f"flow_{workers}worker_s"] = min(
                    flow_run(
                        folder,
                        DATA / f"scale-{workers}",
                        args.shard_size,
                        cluster.scheduler_address,
                    )
                    for _ in range(args.repeats)
                )
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python benchmarks/scale_bench.py " + " ".join(sys.argv[1:]),
        "files": args.files,
        "shard_size": args.shard_size,
        **{k: round(v, 2) for k, v in results.items()},
        "orchestration_overhead": round(results["flow_1worker_s"] / results["plain_loop_s"] - 1, 3),
        "two_worker_speedup": round(results["flow_1worker_s"] / results["flow_2worker_s"], 2),
        "files_per_s_2workers": round(args.files / results["flow_2worker_s"], 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
