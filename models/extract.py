"""The units stage's pure core: cache keys, content shards and unit rows for recordings.

A recording's ``unit_key`` is a hash of its audio sha256, the checkpoint fingerprints and the
parameters that change units; rows whose key is already in the units table are never recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import soundfile as sf
import torch

from models.speech_tokenizer import MAX_CHUNK, MIN_CHUNK, SAMPLE_RATE, SpeechTokenizer
from schemas.tables import UNITS
from storage.audio import iter_audio_16k
from storage.recordings import reject_row
from storage.sharding import content_groups

EXTRACT_CODE_VERSION = 1


@dataclass(frozen=True)
class UnitJob:
    """One recording to tokenize (what a units task needs: no audio, just where it is)."""

    id: str
    uri: str
    sha256: str
    unit_key: str
    num_samples_16k: int
    duration_s: float


def unit_key(sha256: str, fingerprints: Mapping[str, str], params: Mapping[str, Any]) -> str:
    payload = {
        "sha256": sha256,
        "checkpoints": dict(sorted(fingerprints.items())),
        "params": dict(sorted(params.items())),
        "schema": UNITS.version,
        "code": EXTRACT_CODE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def shard_jobs(jobs: Sequence[UnitJob], target: int) -> list[tuple[str, tuple[UnitJob, ...]]]:
    """Content-defined shards over unit keys (``storage.sharding``), keyed by their contents."""
    shards = []
    for group in content_groups(jobs, lambda job: f"{job.unit_key}:{job.id}", target):
        blob = json.dumps([[j.id, j.unit_key] for j in group]).encode()
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
        encoded = tokenizer.encode_chunks([c for _, c in pending], max_batch, batch_seconds)
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
    params_json = json.dumps(dict(sorted(params.items())), sort_keys=True)
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
                "params": params_json,
            }
        )
    return rows, rejects


def _reject(job: UnitJob, reason: str, message: str) -> dict[str, Any]:
    return reject_row(job.uri, reason, f"{job.uri}: {message}", job.id, stage="units")
