"""The units stage's pure core: cache keys, content shards and unit rows for recordings.

A recording's ``unit_key`` is a hash of its audio sha256, the checkpoint fingerprints and the
parameters that change units; rows whose key is already in the units table are never recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import soundfile as sf
import torch

from models.speech_tokenizer import MAX_CHUNK, MIN_CHUNK, SAMPLE_RATE, SpeechTokenizer
from schemas.tables import F0_STATS, UNITS
from storage.audio import iter_audio_16k
from storage.recordings import reject_row
from storage.sharding import content_groups

EXTRACT_CODE_VERSION = 1
J = TypeVar("J", "UnitJob", "F0Job")


@dataclass(frozen=True)
class UnitJob:
    """One recording to tokenize (what a units task needs: no audio, just where it is)."""

    id: str
    uri: str
    sha256: str
    unit_key: str
    num_samples_16k: int
    duration_s: float
    f0_mean: float | None = None  # the speaker's mean F0 (Hz) under speaker-level normalisation


def unit_key(sha256: str, fingerprints: Mapping[str, str], params: Mapping[str, Any]) -> str:
    payload = {
        "sha256": sha256,
        "checkpoints": dict(sorted(fingerprints.items())),
        "params": dict(sorted(params.items())),
        "schema": UNITS.version,
        "code": EXTRACT_CODE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def shard_jobs(
    jobs: Sequence[J], target: int, content: Callable[[J], str]
) -> list[tuple[str, tuple[J, ...]]]:
    """Content-defined shards (``storage.sharding``) over each job's cache key (``content``: the
    unit key, or an F0-stats key), named by the ids and keys they hold."""
    shards = []
    for group in content_groups(jobs, lambda job: f"{content(job)}:{job.id}", target):
        blob = json.dumps([[j.id, content(j)] for j in group]).encode()
        shards.append((hashlib.sha256(blob).hexdigest()[:24], tuple(group)))
    return shards


def unit_rows(
    jobs: Iterable[UnitJob],
    tokenizer: SpeechTokenizer,
    params: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
    max_batch: int = 1,
    fingerprints: Mapping[str, str] | None = None,
    batch_seconds: float = 0.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stream each job's audio (16 kHz mono, 100 s chunks) into the tokenizer: (units rows, rejects).

    At most one chunk of decoded audio (4 × ``batch_seconds`` when batching) waits for the model, so
    a two-hour recording or a shard of thousands of files costs the memory of a few chunks.
    ``fingerprints`` (already computed by the planner) saves hashing the checkpoints again per worker.
    A file that ingest accepted but that can no longer be read (deleted, replaced) is rejected
    with stage ``units``; network errors propagate so the task is retried.
    """
    jobs = list(jobs)
    pool_limit = max(MAX_CHUNK, 4 * batch_seconds * SAMPLE_RATE if max_batch > 1 else 0)
    pending: list[tuple[int, torch.Tensor]] = []
    units: dict[int, dict[str, list[int]]] = {}
    samples: dict[int, int] = {}
    rejects = []

    def flush() -> None:
        encoded = tokenizer.encode_chunks(
            [c for _, c in pending], max_batch, batch_seconds, [jobs[i].f0_mean for i, _ in pending]
        )
        for (i, _), chunk_units in zip(pending, encoded, strict=True):  # audio order per job
            for name, values in chunk_units.items():
                units[i][name].extend(values)
        pending.clear()

    for i, job in enumerate(jobs):
        units[i] = {name: [] for name in tokenizer.streams}
        samples[i] = 0
        try:
            for block in iter_audio_16k(job.uri, storage_options, block_samples=MAX_CHUNK):
                samples[i] += len(block)
                if len(block) >= MIN_CHUNK:
                    pending.append((i, torch.from_numpy(block)))
                if sum(c.numel() for _, c in pending) >= pool_limit:
                    flush()
        except FileNotFoundError:
            rejects.append(_reject(job, "missing", "file not found (it was there at ingest)"))
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            rejects.append(_reject(job, "corrupt", f"cannot decode any more: {exc}"))
        else:
            continue
        pending[:] = [(k, c) for k, c in pending if k != i]
        del units[i]
    flush()
    checkpoints = json.dumps(dict(fingerprints or tokenizer.fingerprints), sort_keys=True)
    expressive = tokenizer.variant == "expressive"
    rows = []
    for i, u in units.items():
        job = jobs[i]
        rows.append(
            {
                "id": job.id,
                "sha256": job.sha256,
                "unit_key": job.unit_key,
                "variant": tokenizer.variant,
                "num_samples_16k": samples[i],
                "duration_s": job.duration_s,
                "chunks": max(1, -(-samples[i] // MAX_CHUNK)),
                "hubert": u["hubert"],
                "pitch": u.get("pitch") if expressive else None,
                "style": u.get("style") if expressive else None,
                "n_hubert": len(u["hubert"]),
                "n_pitch": len(u["pitch"]) if expressive else None,
                "n_style": len(u["style"]) if expressive else None,
                "checkpoints": checkpoints,
                "params": _params_json(params, job.f0_mean),
            }
        )
    return rows, rejects


@dataclass(frozen=True)
class F0Job:
    """One recording whose voiced F0 goes into its speaker's mean (speaker-level normalisation)."""

    id: str
    uri: str
    sha256: str
    speaker: str
    stats_key: str


def f0_stats_key(sha256: str, pitch_fingerprint: str, extractor: str) -> str:
    payload = [sha256, pitch_fingerprint, extractor, F0_STATS.version, EXTRACT_CODE_VERSION]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:32]


def f0_stat_rows(
    jobs: Iterable[F0Job],
    tokenizer: SpeechTokenizer,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """(voiced F0 sum and count per recording over its 100 s chunks, ids that could not be read).

    Unreadable files are left to the units stage, which rejects them naming the file.
    """
    if tokenizer.pitch is None:
        raise ValueError("speaker F0 statistics need the expressive variant (a pitch model)")
    rows, unreadable = [], []
    for job in jobs:
        total, frames = 0.0, 0
        try:
            for block in iter_audio_16k(job.uri, storage_options, block_samples=MAX_CHUNK):
                if len(block) >= MIN_CHUNK:
                    s, n = tokenizer.pitch.voiced_f0(torch.from_numpy(block))
                    total, frames = total + s, frames + n
        except (FileNotFoundError, sf.LibsndfileError, RuntimeError, ValueError):
            unreadable.append(job.id)
            continue
        rows.append(
            {
                "id": job.id,
                "sha256": job.sha256,
                "stats_key": job.stats_key,
                "speaker": job.speaker,
                "voiced_sum": total,
                "voiced_frames": frames,
            }
        )
    return rows, unreadable


def speaker_f0_means(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Speaker → mean F0 (Hz) over the voiced frames of all their recordings, with the counts
    (the reference's stats-file layout, ``{speaker: {"f0_mean": …}}``); speakers with no voiced
    frame are left out, so their recordings fall back to the utterance mean."""
    pooled: dict[str, list[float]] = {}
    for row in rows:
        acc = pooled.setdefault(row["speaker"], [0.0, 0, 0])
        acc[0] += row["voiced_sum"]
        acc[1] += row["voiced_frames"]
        acc[2] += 1
    return {
        speaker: {"f0_mean": total / frames, "voiced_frames": int(frames), "recordings": int(n)}
        for speaker, (total, frames, n) in sorted(pooled.items())
        if frames > 0
    }


def _params_json(params: Mapping[str, Any], f0_mean: float | None) -> str:
    """The parameters that made a row's units (the speaker's mean F0 when one was used)."""
    own = {**params, "f0_mean": f0_mean} if f0_mean is not None else dict(params)
    return json.dumps(own, sort_keys=True)


def _reject(job: UnitJob, reason: str, message: str) -> dict[str, Any]:
    return reject_row(job.uri, reason, f"{job.uri}: {message}", job.id, stage="units")
