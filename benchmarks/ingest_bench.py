"""Ingest benchmark: our stage vs the reference's way (one process, whole-file loads) vs the machine.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/ingest_bench.py --files 1000``).
Measures, on the same generated corpus (mixed rates/channels/formats, written under
benchmarks/.data, which is not committed):
  reference_loop   one process, sf.read of the whole file + sha256 + numpy stats (the reference loads
                   each file whole with its own loader, batch size 1)
  our_loop         our streamed ``inspect_audio`` in one process (per-file cost of our code)
  decode_limit     the machine's limit: bare decode (sf.read) of every file on all cores, no hashing/stats
  flow_cold        `spiritflow ingest` as a Prefect flow on a new LocalCluster (all cores): cluster
                   start, planning, shards, GE validation and commit (server start excluded)
  flow_running_cluster  the same flow on an already running cluster (what --dask-address gives)
  flow_rerun       the same flow again: every shard reused (the fixed cost of a run)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.audio import inspect_audio  # noqa: E402

DATA = ROOT / "benchmarks" / ".data"


def make_corpus(n: int, seed: int = 0) -> tuple[Path, float]:
    folder = DATA / f"corpus-{n}"
    marker = folder / ".done"
    rng = np.random.default_rng(seed)
    total = 0.0
    if marker.exists():
        return folder, float(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rate = int(rng.choice([16_000, 16_000, 22_050, 44_100]))
        seconds = float(rng.uniform(1.0, 10.0))
        channels = int(rng.choice([1, 1, 2]))
        ext = str(rng.choice(["wav", "wav", "flac"]))
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(
            len(t)
        )
        data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
        sf.write(folder / f"utt{i:05d}.{ext}", data.astype(np.float32), rate)
        total += seconds
    marker.write_text(str(total))
    return folder, total


def reference_style(path: str) -> dict[str, float]:
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return {
        "sha": len(digest),
        "peak": float(np.abs(data).max()),
        "rms": float(np.sqrt(np.mean(data**2))),
        "dur": len(mono) / sr,
    }


def bare_decode(path: str) -> int:
    data, _ = sf.read(path, dtype="float32")
    return len(data)


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=128)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ingest.json"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    folder, audio_s = make_corpus(args.files)
    files = sorted(str(p) for p in folder.iterdir() if not p.name.startswith("."))
    results: dict[str, float] = {}

    results["reference_loop_s"] = timed(lambda: [reference_style(f) for f in files])
    results["our_loop_s"] = timed(lambda: [inspect_audio(f) for f in files])
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(bare_decode, files[:cores]))  # warm the pool
        results["decode_limit_s"] = timed(lambda: list(pool.map(bare_decode, files, chunksize=16)))

    from flows.ingest import ingest_flow
    from flows.params import IngestParams
    from flows.runtime import ClusterOptions, prefect_api, task_runner

    out = DATA / f"out-{args.files}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    params = IngestParams(source=str(folder), out=str(out), shard_size=args.shard_size)
    with prefect_api():
        from distributed import LocalCluster

        def run(options: ClusterOptions, target: Path) -> None:
            if target.exists():
                import shutil

                shutil.rmtree(target)
            flow = ingest_flow.with_options(task_runner=task_runner(options))
            flow(params.model_copy(update={"out": str(target)}))

        results["flow_cold_s"] = timed(run, ClusterOptions(workers=cores), out)
        with LocalCluster(n_workers=cores, threads_per_worker=1, dashboard_address=":0") as cluster:
            running = ClusterOptions(dask_address=cluster.scheduler_address)
            run(running, DATA / "warmup")  # imports on the workers
            results["flow_running_cluster_s"] = timed(run, running, out)
            results["flow_rerun_s"] = timed(
                lambda: ingest_flow.with_options(task_runner=task_runner(running))(params)
            )

    report = {
        "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
        "files": len(files),
        "audio_minutes": round(audio_s / 60, 1),
        **{k: round(v, 2) for k, v in results.items()},
        "flow_vs_reference_speedup": round(
            results["reference_loop_s"] / results["flow_running_cluster_s"], 2
        ),
        "flow_cold_vs_reference_speedup": round(
            results["reference_loop_s"] / results["flow_cold_s"], 2
        ),
        "flow_marginal_vs_reference_speedup": round(
            results["reference_loop_s"]
            / max(1e-9, results["flow_running_cluster_s"] - results["flow_rerun_s"]),
            2,
        ),
        "our_loop_vs_reference_speedup": round(
            results["reference_loop_s"] / results["our_loop_s"], 2
        ),
        "flow_share_of_decode_limit": round(
            results["decode_limit_s"] / results["flow_running_cluster_s"], 2
        ),
        "files_per_s_flow": round(len(files) / results["flow_running_cluster_s"], 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
