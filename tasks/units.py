"""Units tasks: plan (what is already tokenized), extract one shard on a worker, finalize the table.

Models are loaded once per worker process and reused by every task that runs there.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from models.checkpoints import checkpoints_dir
from models.extract import UnitJob, shard_jobs, unit_key, unit_rows
from models.speech_tokenizer import SpeechTokenizer, unit_fingerprints
from schemas.tables import RECORDINGS, REJECTS, UNITS
from storage.layout import RunLayout
from storage.options import filesystem
from storage.parquet import (
    commit_table,
    exists,
    read_table,
    table_part_urls,
    to_arrow,
    write_atomic,
    write_bytes_atomic,
)
from tasks.common import cached_model, publish_data_docs, validate_parts
from tasks.ingest import TASK_OPTIONS

UNIT_REJECTS = "unit_rejects"
GPU_BATCH_SECONDS = 400.0  # padded audio per forward pass on a GPU (mHuBERT-base fits easily)


def tokenizer_for(info: dict[str, Any]) -> SpeechTokenizer:
    """One SpeechTokenizer per worker process and configuration (loading costs seconds)."""
    key = (
        "units",
        info["checkpoints"],
        info["variant"],
        info["device"],
        info["hubert_layer"],
        info["quantizer"],
        info["f0_extractor"],
    )
    return cached_model(
        key,
        lambda: SpeechTokenizer.from_checkpoint_dir(
            info["checkpoints"],
            variant=info["variant"],
            device=info["device"],
            hubert_layer=info["hubert_layer"],
            quantizer=info["quantizer"],
            with_vocoder=False,
            f0_extractor=info["f0_extractor"],
        ),
    )


@dataclass
class UnitsPlan:
    checkpoints: str
    fingerprints: dict[str, str]
    key_params: dict[str, Any]
    keep_parts: list[str]
    carry: list[tuple[str, list[str]]]
    shards: list[tuple[str, tuple[UnitJob, ...]]]
    wanted: int


@dataclass
class UnitsOutcome:
    key: str
    units: str
    rejects: str
    rows: int
    rejected: int
    audio_s: float
    reused: bool


@dataclass
class UnitsSummary:
    out: str
    recordings: int = 0
    rows: int = 0
    rejected: int = 0
    extracted: int = 0
    reused_rows: int = 0
    shards_computed: int = 0
    shards_reused: int = 0
    audio_hours: float = 0.0
    seconds: float = 0.0
    checkpoints: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@task(name="plan-units", **TASK_OPTIONS)
def plan_units(
    layout: RunLayout,
    recordings_url: str,
    params: dict[str, Any],
    speaker_f0: dict[str, float] | None = None,
) -> UnitsPlan:
    """Unit keys for every recording; committed shards whose rows are all still wanted are kept.

    ``speaker_f0`` (speaker-level pitch normalisation): a recording whose speaker has a mean F0
    is tokenized with it, and the mean enters its unit key (a changed mean re-extracts only
    that speaker's recordings).
    """
    opts = layout.storage_options
    root = checkpoints_dir(params["checkpoints"])
    fingerprints = unit_fingerprints(root, params["variant"], params.get("quantizer"))
    key_params = {"variant": params["variant"], "hubert_layer": params["hubert_layer"]}
    if params["variant"] == "expressive":
        key_params["f0_extractor"] = params["f0_extractor"]
    cols = ["id", "uri", "sha256", "num_samples_16k", "duration_s", "speaker"]
    rec = read_table(recordings_url, RECORDINGS, columns=cols, storage_options=opts).to_pylist()
    jobs = {}
    for r in rec:
        mean = (speaker_f0 or {}).get(r["speaker"]) if r["speaker"] else None
        mean = round(mean, 6) if mean is not None else None  # what the key says is what is used
        own = {**key_params, "f0_mean": mean} if mean is not None else key_params
        jobs[r["id"]] = UnitJob(
            r["id"],
            r["uri"],
            r["sha256"],
            unit_key(r["sha256"], fingerprints, own),
            r["num_samples_16k"],
            r["duration_s"],
            mean,
        )
    wanted = {(j.id, j.unit_key) for j in jobs.values()}
    done: set[str] = set()
    keep, carry = [], []
    if exists(layout.manifest(UNITS.name), opts):
        for url in table_part_urls(layout.table(UNITS.name), opts):
            pairs = [
                (p["id"], p["unit_key"])
                for p in read_table(
                    url, columns=["id", "unit_key"], storage_options=opts
                ).to_pylist()
            ]
            still = [p for p in pairs if p in wanted]
            done.update(i for i, _ in still)
            if len(still) == len(pairs):
                keep.append(url)
            elif still:
                carry.append((url, [i for i, _ in still]))
    todo = [j for i, j in sorted(jobs.items()) if i not in done]
    shards = shard_jobs(todo, params["shard_size"], content=lambda j: j.unit_key)
    get_run_logger().info(
        "units: %d recordings, %d already tokenized, %d to extract in %d shards",
        len(jobs),
        len(done),
        len(todo),
        len(shards),
    )
    return UnitsPlan(str(root), fingerprints, key_params, keep, carry, shards, len(jobs))


@task(name="extract-units", **TASK_OPTIONS)
def extract_units(
    key: str, jobs: tuple[UnitJob, ...], layout: RunLayout, plan_info: dict[str, Any]
) -> UnitsOutcome:
    """Tokenize one shard (models cached per worker) and write its units + unit_rejects shards."""
    opts = layout.storage_options
    units_url = layout.shard(UNITS.name, key)
    rejects_url = layout.shard(UNIT_REJECTS, key)
    fs, path = filesystem(units_url, opts)
    if fs.exists(path):
        table = pq.read_table(path, columns=["duration_s"], filesystem=fs)
        rejected = pq.read_metadata(filesystem(rejects_url, opts)[1], filesystem=fs).num_rows
        return UnitsOutcome(
            key,
            units_url,
            rejects_url,
            table.num_rows,
            rejected,
            float(pa.compute.sum(table["duration_s"]).as_py() or 0),
            True,
        )
    import torch

    torch.set_num_threads(plan_info["threads"])
    tok = tokenizer_for(plan_info)
    on_gpu = tok.device.type == "cuda"
    max_batch = plan_info["max_batch"] or (16 if on_gpu else 1)
    batch_seconds = plan_info["batch_seconds"] or (GPU_BATCH_SECONDS if on_gpu else 0.0)
    rows, rejects = unit_rows(
        jobs,
        tok,
        plan_info["key_params"],
        opts,
        max_batch=max_batch,
        fingerprints=plan_info["fingerprints"],
        batch_seconds=batch_seconds,
    )
    write_atomic(to_arrow(rejects, REJECTS), rejects_url, opts)
    write_atomic(to_arrow(rows, UNITS), units_url, opts)
    return UnitsOutcome(
        key,
        units_url,
        rejects_url,
        len(rows),
        len(rejects),
        sum(r["duration_s"] for r in rows),
        False,
    )


@task(name="carry-units", **TASK_OPTIONS)
def carry_units(carry: list[tuple[str, list[str]]], layout: RunLayout) -> str | None:
    """Rows of partly superseded shards that are still wanted, copied into one shard (no extraction)."""
    if not carry:
        return None
    opts = layout.storage_options
    tables = []
    for url, ids in carry:
        table = read_table(url, UNITS, storage_options=opts)
        tables.append(table.filter(pa.compute.is_in(table["id"], value_set=pa.array(ids))))
    digest = hashlib.sha256(
        json.dumps(sorted((u, sorted(i)) for u, i in carry)).encode()
    ).hexdigest()[:24]
    return write_atomic(pa.concat_tables(tables), layout.shard(UNITS.name, f"carry-{digest}"), opts)


@task(name="finalize-units", **TASK_OPTIONS)
def finalize_units(
    layout: RunLayout,
    plan: UnitsPlan,
    outcomes: list[UnitsOutcome],
    carried: str | None,
    started: float,
) -> UnitsSummary:
    """Validate the whole units table with GE, commit it (and unit_rejects), write the report."""
    opts = layout.storage_options
    parts = plan.keep_parts + ([carried] if carried else []) + [o.units for o in outcomes]
    table = validate_parts(parts, UNITS, opts)  # ids and durations only
    reject_parts = [o.rejects for o in outcomes]
    rejected = sum(o.rejected for o in outcomes)
    summary = UnitsSummary(
        out=layout.root,
        recordings=plan.wanted,
        rows=table.num_rows,
        rejected=rejected,
        extracted=sum(o.rows for o in outcomes if not o.reused),
        reused_rows=table.num_rows - sum(o.rows for o in outcomes if not o.reused),
        shards_computed=sum(not o.reused for o in outcomes),
        shards_reused=sum(o.reused for o in outcomes),
        audio_hours=float(pa.compute.sum(table["duration_s"]).as_py() or 0.0) / 3600,
        seconds=round(time.time() - started, 2),
        checkpoints=plan.fingerprints,
    )
    summary.tables["units"] = commit_table(
        layout.table(UNITS.name), UNITS, parts, table.num_rows, opts
    ).rsplit("/", 1)[0]
    summary.tables[UNIT_REJECTS] = commit_table(
        layout.table(UNIT_REJECTS), REJECTS, reject_parts, rejected, opts
    ).rsplit("/", 1)[0]
    report = layout.report("units-summary.json")
    write_bytes_atomic(json.dumps(summary.as_dict(), indent=1).encode(), report, opts)
    summary.tables["report"] = report
    docs = publish_data_docs(layout)
    if docs:
        summary.tables["data_docs"] = docs
    return summary
