"""Units benchmark: full-size random models (mHuBERT-base, wav2vec2-base style encoder, FCPE + VQ-VAE).

Run: ``.venv/bin/python benchmarks/units_bench.py [--seconds 150]`` (writes benchmarks/results/units.json).
In one run, on the same clips (1–30 s, real LibriSpeech speech tiled, varied gain and noise):
  roofline       best torch.matmul GFLOP/s at transformer shapes, all cores (the machine's limit)
  hubert_batch1  HuBERT + quantizer one chunk at a time, all cores: GFLOP/s (analytic FLOPs) and % of roofline
  hubert_batched the same with chunks of similar length batched 8 per forward pass
  reference_e2e  the reference's way: one process, files one at a time, all cores as torch threads,
                 decode + resample + HuBERT + pitch + style (expressive), models loaded once
  worker_env_*   roofline, hubert_batch1 and reference_e2e again in a process started with the
                 glibc settings spiritflow gives its workers (flows.runtime.WORKER_MALLOC_ENV), so
                 the allocator's share of the flow's speed is visible on its own
  flow_e2e       `units` flow on a LocalCluster (one worker process per core, 1 torch thread each),
                 same files, models loaded once per worker (Prefect + Dask included)
  flow_1worker   the same flow on one worker process with every core as torch threads
Audio seconds per wall second are reported for the end-to-end runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / ".data"

from flows.runtime import WORKER_MALLOC_ENV  # noqa: E402
from models.speech_tokenizer import SpeechTokenizer, chunks  # noqa: E402
from models.tiny import write_tiny_checkpoints  # noqa: E402
from storage.audio import load_audio_16k  # noqa: E402


def make_clips(total_s: float, seed: int = 0) -> tuple[Path, list[Path], float]:
    folder = DATA / f"units-clips-{int(total_s)}"
    if folder.exists():
        files = sorted(folder.glob("*.wav"))
        return folder, files, sum(sf.info(str(f)).duration for f in files)
    folder.mkdir(parents=True)
    speech, _ = sf.read(
        ROOT / "tests/fixtures/reference-tiny/audio/librispeech_7143-88743-0029.flac",
        dtype="float32",
    )
    rng = np.random.default_rng(seed)
    done, i = 0.0, 0
    while done < total_s:
        seconds = float(min(rng.uniform(1.0, 30.0), total_s - done + 1.0))
        n = int(seconds * 16_000)
        start = int(rng.integers(0, len(speech)))
        clip = np.tile(np.roll(speech, -start), n // len(speech) + 1)[:n] * rng.uniform(0.4, 1.2)
        clip = np.clip(clip + 0.005 * rng.standard_normal(n), -1, 1).astype(np.float32)
        sf.write(folder / f"clip{i:03d}.wav", clip, 16_000)
        done += seconds
        i += 1
    return folder, sorted(folder.glob("*.wav")), done


def matmul_roofline(threads: int) -> float:
    torch.set_num_threads(threads)
    best = 0.0
    for m, k, n in ((1024, 768, 3072), (1024, 3072, 768), (2048, 768, 768)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        reps = 20
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def hubert_flops(tok: SpeechTokenizer, samples: int) -> float:
    """Multiply-adds ×2 of the conv stack, projection, 11 transformer blocks and the quantizer MLP."""
    cfg = tok.hubert.model.config
    length, c_in, flops = samples, 1, 0.0
    for dim, kernel, stride in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride, strict=True):
        length = (length - kernel) // stride + 1
        flops += 2 * c_in * dim * kernel * length
        c_in = dim
    t, d, f = length, cfg.hidden_size, cfg.intermediate_size
    flops += 2 * t * c_in * d
    flops += 2 * t * d * (d // cfg.num_conv_pos_embedding_groups) * cfg.num_conv_pos_embeddings
    flops += cfg.num_hidden_layers * (2 * t * 4 * d * d + 2 * t * 2 * d * f + 2 * 2 * t * t * d)
    for layer in tok.quantizer.encoder:
        if isinstance(layer, torch.nn.Linear):
            flops += 2 * t * layer.in_features * layer.out_features
    return flops


def time_hubert(tok: SpeechTokenizer, pieces: list[torch.Tensor], batch: int) -> float:
    order = sorted(pieces, key=len)
    start = time.perf_counter()
    for k in range(0, len(order), batch):
        for feats in tok.hubert(order[k : k + batch]):
            tok.quantizer(feats)
    return time.perf_counter() - start


IN_PROCESS_KEYS = ("roofline_gflops", "hubert_batch1_gflops", "reference_e2e_s")


def in_process(
    ckpt: Path, files: list[Path], cores: int, full: bool = True
) -> tuple[dict[str, float], list[dict[str, list[int]]]]:
    """Roofline, HuBERT efficiency and the reference's end-to-end loop, in this process
    (``full``: also batched and one-thread HuBERT); returns the numbers and the loop's units."""
    res = {"roofline_gflops": matmul_roofline(cores)}

    torch.set_num_threads(cores)
    tok = SpeechTokenizer.from_checkpoint_dir(
        ckpt, variant="expressive", device="cpu", with_vocoder=False
    )
    wavs = [torch.from_numpy(load_audio_16k(str(f))) for f in files]
    pieces = [c for w in wavs for c in chunks(w)]
    flops = sum(hubert_flops(tok, len(p)) for p in pieces)
    time_hubert(tok, pieces[:2], 1)  # warm-up
    t1 = time_hubert(tok, pieces, 1)
    res.update(hubert_gflop=flops / 1e9, hubert_batch1_s=t1, hubert_batch1_gflops=flops / t1 / 1e9)
    if full:
        tb = time_hubert(tok, pieces, 8)
        res.update(hubert_batched_s=tb, hubert_batched_gflops=flops / tb / 1e9)
        # One thread, as each worker of the flow runs: efficiency against the 1-thread roofline.
        res["roofline_1thread_gflops"] = matmul_roofline(1)
        subset = pieces[: max(2, len(pieces) // 3)]
        t_single = time_hubert(tok, subset, 1)
        res["hubert_1thread_gflops"] = (
            sum(hubert_flops(tok, len(p)) for p in subset) / t_single / 1e9
        )
        torch.set_num_threads(cores)

    start = time.perf_counter()
    ref_tok = SpeechTokenizer.from_checkpoint_dir(
        ckpt, variant="expressive", device="cpu", with_vocoder=False
    )
    units = [ref_tok.encode_units(load_audio_16k(str(f))) for f in files]
    res["reference_e2e_s"] = time.perf_counter() - start
    return res, units


def _warm_imports() -> None:
    import models.speech_tokenizer  # noqa: F401 (imports torch, transformers, torchfcpe)
    import tasks.units  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=150.0, help="total audio (default 150 s)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "units.json"))
    parser.add_argument(
        "--in-process-only", action="store_true", help="print the in-process numbers as JSON"
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    ckpt = DATA / "full-ckpt"
    if not (ckpt / "speech_tokenizer").exists():
        write_tiny_checkpoints(ckpt, size="base")
    folder, files, audio_s = make_clips(args.seconds)
    if args.in_process_only:
        only, _ = in_process(ckpt, files, cores, full=False)
        print(json.dumps({k: only[k] for k in IN_PROCESS_KEYS}))
        return
    res, reference_units = in_process(ckpt, files, cores)
    env = {**os.environ, **{k: str(v) for k, v in WORKER_MALLOC_ENV.items()}}
    worker_env = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--seconds", str(args.seconds), "--in-process-only"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()[-1]
    )
    res.update({f"worker_env_{k}": worker_env[k] for k in IN_PROCESS_KEYS})

    from distributed import LocalCluster

    from flows.ingest import ingest_flow
    from flows.params import IngestParams, UnitsParams
    from flows.runtime import ClusterOptions, prefect_api, task_runner, tune_worker_malloc
    from flows.units import units_flow
    from storage.parquet import read_table

    out = DATA / "units-out"
    shutil.rmtree(out, ignore_errors=True)
    tune_worker_malloc()  # as the CLI's clusters do (before the workers spawn)
    with (
        prefect_api(),
        LocalCluster(n_workers=cores, threads_per_worker=1, dashboard_address=":0") as cluster,
    ):
        runner = task_runner(ClusterOptions(dask_address=cluster.scheduler_address))
        ingest_flow.with_options(task_runner=runner)(IngestParams(source=str(folder), out=str(out)))
        # Warm workers: imports happen once per worker process in any long run; models still load in the timed run.
        cluster.get_client().run(
            lambda: (
                __import__("models.speech_tokenizer") and __import__("transformers.models.hubert")
            )
        )
        params = UnitsParams(
            out=str(out), checkpoints=str(ckpt), variant="expressive", device="cpu", shard_size=1
        )
        start = time.perf_counter()
        units_flow.with_options(
            task_runner=task_runner(ClusterOptions(dask_address=cluster.scheduler_address))
        )(params)
        res["flow_e2e_s"] = time.perf_counter() - start
        # Same flow, one worker process using every core as torch threads (one model copy per machine).
        out1 = DATA / "units-out-1worker"
        shutil.rmtree(out1, ignore_errors=True)
        shutil.copytree(out / "recordings", out1 / "recordings")
    with (
        prefect_api(),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as one,
    ):
        from distributed import Client

        with Client(one.scheduler_address) as client:
            client.run(_warm_imports)
        start = time.perf_counter()
        units_flow.with_options(
            task_runner=task_runner(ClusterOptions(dask_address=one.scheduler_address))
        )(
            params.model_copy(
                update={
                    "out": str(out1),
                    "threads_per_task": cores,
                    "recordings": str(out1 / "recordings"),
                }
            )
        )
        res["flow_1worker_e2e_s"] = time.perf_counter() - start
    table = read_table(str(out / "units")).to_pandas().set_index("id")
    same = all(
        list(table.loc[f.stem, "hubert"]) == u["hubert"]
        and list(table.loc[f.stem, "style"]) == u["style"]
        for f, u in zip(files, reference_units, strict=True)
    )

    report = {
        "machine": f"{platform.machine()}, {cores} cores, torch {torch.__version__}, CPU float32",
        "clips": len(files),
        "audio_s": round(audio_s, 1),
        **{k: round(v, 2) for k, v in res.items()},
        "hubert_batch1_pct_of_roofline": round(
            100 * res["hubert_batch1_gflops"] / res["roofline_gflops"], 1
        ),
        "hubert_batched_pct_of_roofline": round(
            100 * res["hubert_batched_gflops"] / res["roofline_gflops"], 1
        ),
        "hubert_1thread_pct_of_roofline": round(
            100 * res["hubert_1thread_gflops"] / res["roofline_1thread_gflops"], 1
        ),
        "worker_env_hubert_batch1_pct_of_roofline": round(
            100 * res["worker_env_hubert_batch1_gflops"] / res["worker_env_roofline_gflops"], 1
        ),
        "batched_vs_batch1": round(res["hubert_batch1_s"] / res["hubert_batched_s"], 2),
        "reference_audio_s_per_s": round(audio_s / res["reference_e2e_s"], 2),
        "flow_audio_s_per_s": round(audio_s / res["flow_e2e_s"], 2),
        "flow_vs_reference": round(res["reference_e2e_s"] / res["flow_e2e_s"], 2),
        "flow_1worker_vs_reference": round(res["reference_e2e_s"] / res["flow_1worker_e2e_s"], 2),
        "worker_env_reference_vs_reference": round(
            res["reference_e2e_s"] / res["worker_env_reference_e2e_s"], 2
        ),
        "flow_units_equal_reference_loop": same,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
