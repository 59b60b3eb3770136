"""Ingest's pure core: content-defined shards of the plan, and rows for each shard's files.

Shards are content-defined over ids (``storage.sharding``), so adding or changing one file
changes one shard key and a rerun recomputes only that shard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from schemas.errors import BadAudioError
from schemas.tables import RECORDINGS, REJECTS
from storage.audio import inspect_audio
from storage.sharding import content_groups
from storage.sources import PlanReject, SourceItem

INGEST_CODE_VERSION = 1
WORDS_TOLERANCE_S = 0.05  # word end times may overshoot the audio by this much (aligner rounding)


@dataclass(frozen=True)
class Shard:
    key: str
    items: tuple[SourceItem, ...]


def shard_key(items: Iterable[SourceItem], params: Mapping[str, Any], stage: str = "ingest") -> str:
    """Content key: the files (id, uri, size/mtime or ETag, manifest fields), params, versions."""
    payload = {
        "stage": stage,
        "code": INGEST_CODE_VERSION,
        "schemas": [RECORDINGS.version, REJECTS.version],
        "params": dict(sorted(params.items())),
        "items": [[i.id, i.uri, i.fingerprint, i.source_row, i.meta] for i in items],
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def plan_shards(
    items: Sequence[SourceItem], target_size: int, params: Mapping[str, Any]
) -> list[Shard]:
    """Content-defined shards of about ``target_size`` files (see ``storage.sharding``)."""
    groups = content_groups(items, lambda item: item.id, target_size)
    return [Shard(shard_key(group, params), tuple(group)) for group in groups]


def reject_row(
    uri: str,
    reason: str,
    error: str,
    rid: str | None,
    row: int | None = None,
    stage: str = "ingest",
) -> dict[str, Any]:
    """One row of a rejects table (every stage writes the same shape)."""
    return {
        "uri": uri,
        "id": rid,
        "stage": stage,
        "reason": reason,
        "error": error,
        "source_row": row,
    }


def plan_reject_rows(rejects: Iterable[PlanReject], stage: str = "ingest") -> list[dict[str, Any]]:
    return [reject_row(r.uri, r.reason, r.error, r.id, r.source_row, stage) for r in rejects]


def _words_problem(words: list[dict[str, Any]] | None, duration_s: float) -> str | None:
    if not words:
        return None
    last = max(w["end"] for w in words)
    if last > duration_s + WORDS_TOLERANCE_S:
        return f"word timings end at {last:.3f} s but the audio lasts {duration_s:.3f} s"
    return None


def ingest_items(
    items: Iterable[SourceItem],
    storage_options: Mapping[str, Any] | None = None,
    min_duration_s: float = 0.08,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inspect each file: (recordings rows, rejects rows). Infrastructure errors propagate (retry)."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for item in items:
        try:
            stats = inspect_audio(item.uri, storage_options, min_duration_s=min_duration_s)
        except BadAudioError as exc:
            rejects.append(reject_row(item.uri, exc.reason, str(exc), item.id, item.source_row))
            continue
        problem = _words_problem(item.meta.get("words"), stats.duration_s)
        if problem:
            rejects.append(
                reject_row(
                    item.uri, "bad_words", f"{item.uri}: {problem}", item.id, item.source_row
                )
            )
            continue
        meta = {
            k: item.meta.get(k)
            for k in ("text", "speaker", "emotion", "sentiment", "split", "words")
        }
        rows.append(
            {"id": item.id, "uri": item.uri, **asdict(stats), **meta, "source_row": item.source_row}
        )
    return rows, rejects


def duplicate_rows(ids_and_hashes: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per recording whose bytes equal an earlier one (by id order)."""
    first: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for rid, sha in sorted(ids_and_hashes):
        if sha in first:
            out.append({"sha256": sha, "id": rid, "duplicate_of": first[sha]})
        else:
            first[sha] = rid
    return out
