"""Speaker F0 statistics for speaker-level pitch normalisation (`--f0-norm speaker`).

Each recording with a speaker contributes its voiced-F0 sum and count (cached in ``f0_stats`` by
audio sha256 + pitch model + extractor, so a rerun or a grown corpus recomputes only new
recordings); a speaker's mean is pooled over all their recordings and written to
``OUT/f0_speaker_stats.json`` in the reference's stats layout, reusable with ``--f0-speaker-stats``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from prefect import get_run_logger, task

from models.checkpoints import checkpoints_dir
from models.extract import F0Job, f0_stat_rows, f0_stats_key, shard_jobs, speaker_f0_means
from models.pitch import load_pitch_config, load_speaker_stats, normalises_f0
from models.speech_tokenizer import PITCH_DIR, unit_fingerprints
from schemas.expectations import validate_frame
from schemas.tables import F0_STATS, RECORDINGS
from storage.layout import RunLayout
from storage.parquet import (
    commit_table,
    exists,
    read_table,
    to_arrow,
    write_atomic,
    write_bytes_atomic,
)
from tasks.ingest import TASK_OPTIONS
from tasks.units import tokenizer_for

SPEAKER_STATS_FILE = "f0_speaker_stats.json"


@dataclass
class F0StatsPlan:
    checkpoints: str  # resolved, as the units plan has it (one model cache key per worker)
    known: list[dict[str, Any]]  # rows already in f0_stats for recordings still wanted
    shards: list[tuple[str, tuple[F0Job, ...]]]


@task(name="load-f0-speaker-stats", **TASK_OPTIONS)
def load_f0_speaker_stats(path: str) -> dict[str, float]:
    """A user-supplied stats file (reference .pt layout or JSON): speaker → mean F0 (Hz)."""
    return load_speaker_stats(path)


@task(name="plan-f0-stats", **TASK_OPTIONS)
def plan_f0_stats(layout: RunLayout, recordings_url: str, params: dict[str, Any]) -> F0StatsPlan:
    """Recordings with a speaker whose voiced-F0 statistics are not cached yet, in content shards."""
    if params["variant"] != "expressive":
        raise ValueError("--f0-norm speaker needs --variant expressive (pitch units)")
    root = checkpoints_dir(params["checkpoints"])
    if not normalises_f0(load_pitch_config(root / PITCH_DIR)):
        raise ValueError(
            f"{root / PITCH_DIR / 'config.yaml'}: this pitch quantizer does not normalise F0 "
            "(features without norm_), so --f0-norm speaker would change nothing"
        )
    pitch = unit_fingerprints(root, "expressive", params.get("quantizer"))["pitch"]
    opts = layout.storage_options
    cols = ["id", "uri", "sha256", "speaker"]
    rec = read_table(recordings_url, RECORDINGS, columns=cols, storage_options=opts).to_pylist()
    jobs = {
        r["id"]: F0Job(
            r["id"],
            r["uri"],
            r["sha256"],
            r["speaker"],
            f0_stats_key(r["sha256"], pitch, params["f0_extractor"]),
        )
        for r in rec
        if r["speaker"]
    }
    known = []
    if exists(layout.manifest(F0_STATS.name), opts):
        for row in read_table(
            layout.table(F0_STATS.name), F0_STATS, storage_options=opts
        ).to_pylist():
            job = jobs.get(row["id"])
            if job is not None and (row["stats_key"], row["speaker"]) == (
                job.stats_key,
                job.speaker,
            ):
                known.append(row)
    done = {row["id"] for row in known}
    todo = [job for i, job in sorted(jobs.items()) if i not in done]
    shards = shard_jobs(todo, params["shard_size"], content=lambda j: j.stats_key)
    get_run_logger().info(
        "f0 stats: %d recordings of %d speakers (%d cached, %d to measure); %d without a speaker "
        "use their own mean",
        len(jobs),
        len({j.speaker for j in jobs.values()}),
        len(done),
        len(todo),
        len(rec) - len(jobs),
    )
    return F0StatsPlan(str(root), known, shards)


@task(name="f0-stats", **TASK_OPTIONS)
def f0_stats_shard(
    key: str, jobs: tuple[F0Job, ...], layout: RunLayout, info: dict[str, Any]
) -> str:
    """Voiced-F0 sums of one shard's recordings (the pitch model cached per worker)."""
    opts = layout.storage_options
    url = layout.shard(F0_STATS.name, key)
    if exists(url, opts):
        return url
    import torch

    torch.set_num_threads(info["threads"])
    rows, unreadable = f0_stat_rows(jobs, tokenizer_for(info), opts)
    if unreadable:
        get_run_logger().warning(
            "f0 stats: %d recordings unreadable (the units stage rejects them): %s",
            len(unreadable),
            ", ".join(unreadable[:5]),
        )
    return write_atomic(to_arrow(rows, F0_STATS), url, opts)


@task(name="finalize-f0-stats", **TASK_OPTIONS)
def finalize_f0_stats(layout: RunLayout, plan: F0StatsPlan, parts: list[str]) -> dict[str, float]:
    """Merge cached and new statistics into one committed part; speaker means to the stats file."""
    opts = layout.storage_options
    new = [read_table(p, F0_STATS, storage_options=opts) for p in parts]
    table = pa.concat_tables([to_arrow(plan.known, F0_STATS), *new])
    validate_frame(table.to_pandas(), F0_STATS)
    digest = hashlib.sha256(
        json.dumps(
            sorted(zip(table["id"].to_pylist(), table["stats_key"].to_pylist(), strict=True))
        ).encode()
    ).hexdigest()[:24]
    merged = layout.shard(F0_STATS.name, f"all-{digest}")
    if not exists(merged, opts):
        write_atomic(table, merged, opts)
    commit_table(layout.table(F0_STATS.name), F0_STATS, [merged], table.num_rows, opts)
    stats = speaker_f0_means(table.to_pylist())
    write_bytes_atomic(
        json.dumps(stats, indent=1).encode(), f"{layout.root}/{SPEAKER_STATS_FILE}", opts
    )
    return {speaker: entry["f0_mean"] for speaker, entry in stats.items()}
