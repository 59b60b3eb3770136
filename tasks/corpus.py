"""build-corpus tasks: plan, align + build one recording shard, build one text shard, finalize.

Shards are keyed by their contents and every parameter that decides their rows, so a rerun
reuses what exists and rebuilding gives the same bytes. Alignments are cached on their own key
(audio + transcript + aligner), so changing a span rule or seed never realigns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from models.aligner import AlignmentError, aligner_fingerprint, load_aligner
from models.alignment import align_transcript
from models.checkpoints import checkpoints_dir
from models.corpus import (
    CorpusConfig,
    config_json,
    interleaved_sample,
    pack,
    recording_kind,
    speech_sample,
    stats_rows,
    text_rank,
    text_sample,
)
from models.text_tokenizer import TextTokenizer
from schemas.errors import ManifestError, UsageError
from schemas.expectations import validate_frame
from schemas.interleave import SpanRules
from schemas.tables import ALIGNMENTS, CORPUS, CORPUS_STATS, PACKED, RECORDINGS, REJECTS, UNITS
from schemas.tokens import LAST_ID
from storage.audio import load_audio_16k
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
from storage.recordings import plan_reject_rows, reject_row
from storage.sharding import content_groups
from storage.texts import read_text_source
from tasks.common import cached_model, publish_data_docs
from tasks.ingest import TASK_OPTIONS

CORPUS_REJECTS = "corpus_rejects"
ALIGN_REJECTS = "alignment_rejects"  # the cache of failed alignments (also in corpus_rejects)
PACKED_ROWS_PER_FILE = 4096


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:24]


def text_tokenizer_for(folder: str) -> TextTokenizer:
    return cached_model(("text-tokenizer", folder), lambda: TextTokenizer.from_dir(folder))


@dataclass(frozen=True)
class RecordingJob:
    id: str
    sha256: str
    uri: str
    duration_s: float
    units_part: str
    kind: str
    words: tuple[tuple[str, float, float], ...] | None
    transcript: str | None
    align_key: str | None


@dataclass(frozen=True)
class BuildInfo:
    """What every build task needs (small: sent to each task instead of the whole plan)."""

    config: CorpusConfig
    tokenizer: str
    tokenizer_fingerprint: str
    aligner: str
    aligner_fingerprint: str
    max_unaligned: float

    @property
    def build_key(self) -> str:
        return config_json(self.config, self.tokenizer_fingerprint)


@dataclass
class CorpusPlan:
    info: BuildInfo
    recording_shards: list[tuple[str, tuple[RecordingJob, ...]]]
    text_shards: list[tuple[str, tuple[tuple[str, str], ...]]]
    plan_rejects: list[dict[str, Any]]  # text rows and recordings without units
    recordings: int
    text_docs: int
    text_docs_used: int


@dataclass
class ShardOutcome:
    key: str
    corpus: str
    rejects: str
    alignments: str | None
    align_rejects: str | None
    rows: int
    rejected: int
    aligned: int
    reused: bool


@dataclass
class CorpusSummary:
    out: str
    variant: str
    samples: int = 0
    samples_by_kind: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    rejected: int = 0
    recordings: int = 0
    text_docs: int = 0
    text_docs_used: int = 0
    aligned_now: int = 0
    shards_computed: int = 0
    shards_reused: int = 0
    packed_sequences: int = 0
    seconds: float = 0.0
    stats: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _words(value: Any) -> tuple[tuple[str, float, float], ...] | None:
    if not value:
        return None
    return tuple((str(w["word"]), float(w["start"]), float(w["end"])) for w in value)


def _variant(asked: str, found: set[str]) -> str:
    """The corpus variant: as asked (expressive needs expressive units), or the units' own."""
    if asked == "expressive" and "base" in found:
        raise UsageError(
            "--variant expressive needs expressive units (pitch + style); these units are base"
        )
    if asked != "auto":
        return asked
    return "expressive" if found == {"expressive"} else "base"


def _recording_jobs(
    units_meta: dict[str, dict[str, Any]],
    recordings: dict[str, dict[str, Any]],
    config: CorpusConfig,
    aligner_fingerprint: str,
    params: dict[str, Any],
) -> tuple[list[RecordingJob], list[dict[str, Any]]]:
    """One job per recording with units (kind drawn, alignment keyed); rejects for empty units."""
    jobs, rejects = [], []
    for rid, meta in sorted(units_meta.items()):
        rec = recordings.get(rid)
        if rec is None:
            continue  # a units row whose recording left the recordings table: not in this corpus
        if not meta["n_hubert"]:
            error = f"{rec['uri']}: no HuBERT units (audio under 80 ms)"
            rejects.append(reject_row(rec["uri"], "too_short", error, rid, stage="corpus"))
            continue
        words = _words(rec.get("words"))
        transcript = (rec.get("text") or "").strip() or None
        align_key = None
        if words is None and transcript:
            key_parts = [rec["sha256"], transcript, aligner_fingerprint, params["max_unaligned"]]
            align_key = _digest(key_parts)
        kind = recording_kind(config, rid, words is not None or transcript is not None)
        jobs.append(
            RecordingJob(
                rid,
                rec["sha256"],
                rec["uri"],
                float(meta["duration_s"]),
                meta["part"],
                kind,
                words,
                transcript,
                align_key,
            )
        )
    return jobs, rejects


@task(name="plan-corpus", **TASK_OPTIONS)
def plan_corpus(layout: RunLayout, params: dict[str, Any]) -> CorpusPlan:
    """Join units with recordings, pick each recording's kind and the text documents, shard both."""
    opts = layout.storage_options
    units_run = RunLayout.at(params["units"], opts)
    aligner_fp = aligner_fingerprint(params["aligner"])  # the model itself loads in the workers
    units_table = units_run.table(UNITS.name)
    if not exists(units_run.manifest(UNITS.name), opts):
        raise ManifestError(
            f"{units_table}: no units table here (run `spiritflow tokenize` into {params['units']} first)"
        )
    units_meta: dict[str, dict[str, Any]] = {}
    for part in table_part_urls(units_table, opts):
        cols = ["id", "sha256", "variant", "duration_s", "n_hubert"]
        for row in read_table(part, UNITS, columns=cols, storage_options=opts).to_pylist():
            units_meta[row["id"]] = {**row, "part": part}
    variant = _variant(params["variant"], {m["variant"] for m in units_meta.values()})
    tok_dir = params["tokenizer"] or str(
        checkpoints_dir(params["checkpoints"]) / "spiritlm_model" / f"spirit-lm-{variant}-7b"
    )
    tok = TextTokenizer.from_dir(tok_dir)  # fails fast on a wrong id layout
    if variant == "expressive" and tok.units_last_id < LAST_ID:
        raise UsageError(
            f"{tok_dir}: a Base tokenizer (no [Pi..]/[St..] tokens) cannot encode an expressive corpus"
        )
    config = CorpusConfig(
        variant,
        tuple(params["weights"]),
        SpanRules(tuple(params["text_span"]), tuple(params["speech_span"])),
        params["seed"],
    )
    cols = ["id", "uri", "sha256", "text", "words"]
    recordings = {
        r["id"]: r
        for r in read_table(
            units_run.table(RECORDINGS.name), RECORDINGS, columns=cols, storage_options=opts
        ).to_pylist()
    }
    jobs, empty = _recording_jobs(units_meta, recordings, config, aligner_fp, params)
    build_key = config_json(config, tok.fingerprint)
    rec_shards = []
    for group in content_groups(jobs, lambda j: f"{j.sha256}:{j.id}", params["shard_size"]):
        key = _digest([build_key, [[j.id, j.sha256, j.kind, j.align_key, j.words] for j in group]])
        rec_shards.append((key, tuple(group)))
    docs, text_rejects = ([], [])
    if params.get("text"):
        docs, text_rejects = read_text_source(params["text"], opts)
    wanted = config.text_samples_wanted(len(jobs))
    chosen = sorted(docs, key=lambda d: (text_rank(config, d.id), d.id))[
        : wanted if wanted is not None else len(docs)
    ]
    chosen.sort(key=lambda d: d.id)
    text_shards = []
    for group in content_groups(chosen, lambda d: d.id, params["shard_size"]):
        items = tuple((d.id, d.text) for d in group)
        text_shards.append((_digest([build_key, items]), items))
    reject_rows = plan_reject_rows(text_rejects, stage="corpus") + empty
    get_run_logger().info(
        "corpus: %d recordings (%d to align), %d of %d text documents, %d + %d shards",
        len(jobs),
        sum(j.align_key is not None for j in jobs),
        len(chosen),
        len(docs),
        len(rec_shards),
        len(text_shards),
    )
    info = BuildInfo(
        config,
        tok_dir,
        tok.fingerprint,
        params["aligner"],
        aligner_fp,
        params["max_unaligned"],
    )
    return CorpusPlan(
        info,
        rec_shards,
        text_shards,
        reject_rows,
        len(jobs),
        len(docs),
        len(chosen),
    )


@dataclass
class ShardAlignments:
    words: dict[str, list[tuple[str, float, float]]]
    rejects: list[dict[str, Any]]
    url: str | None = None
    rejects_url: str | None = None
    aligned_now: int = 0


def _alignments(
    jobs: tuple[RecordingJob, ...], layout: RunLayout, info: BuildInfo
) -> ShardAlignments:
    """Aligned words per recording, cached in an alignments shard keyed by what decides them."""
    opts = layout.storage_options
    todo = [j for j in jobs if j.align_key is not None]
    if not todo:
        return ShardAlignments({}, [])
    key = _digest(sorted(j.align_key for j in todo if j.align_key))
    url = layout.shard(ALIGNMENTS.name, key)
    rejects_url = layout.shard(ALIGN_REJECTS, key)
    if exists(url, opts):
        rows = read_table(url, ALIGNMENTS, storage_options=opts).to_pylist()
        rejects = read_table(rejects_url, REJECTS, storage_options=opts).to_pylist()
        found = {r["id"]: list(_words(r["words"]) or ()) for r in rows}
        return ShardAlignments(found, rejects, url, rejects_url)
    aligner = cached_model(("aligner", info.aligner), lambda: load_aligner(info.aligner))
    rows, rejects, out = [], [], {}
    for job in todo:
        try:
            wav = load_audio_16k(job.uri, opts)
            words, unaligned = align_transcript(
                aligner, wav, job.transcript or "", job.duration_s, info.max_unaligned
            )
        except AlignmentError as exc:
            rejects.append(
                reject_row(job.uri, exc.reason, f"{job.uri}: {exc.message}", job.id, stage="align")
            )
            continue
        except (FileNotFoundError, RuntimeError) as exc:  # audio gone or no longer decodable
            rejects.append(
                reject_row(job.uri, "unreadable", f"{job.uri}: {exc}", job.id, stage="align")
            )
            continue
        out[job.id] = words
        rows.append(
            {
                "id": job.id,
                "sha256": job.sha256,
                "align_key": job.align_key,
                "source": "aligner",
                "aligner": info.aligner_fingerprint,
                "duration_s": job.duration_s,
                "words": [{"word": w, "start": s, "end": e} for w, s, e in words],
                "n_words": len(words),
                "n_unaligned": unaligned,
            }
        )
    write_atomic(to_arrow(rejects, REJECTS), rejects_url, opts)
    write_atomic(to_arrow(rows, ALIGNMENTS), url, opts)
    return ShardAlignments(out, rejects, url, rejects_url, len(todo))


def _units_rows(jobs: tuple[RecordingJob, ...], opts: Any) -> dict[str, dict[str, Any]]:
    by_part: dict[str, list[str]] = {}
    for job in jobs:
        by_part.setdefault(job.units_part, []).append(job.id)
    out = {}
    for part, ids in by_part.items():
        table = read_table(
            part, UNITS, columns=["id", "hubert", "pitch", "style"], storage_options=opts
        )
        table = table.filter(pc.is_in(table["id"], value_set=pa.array(ids)))
        out.update({r["id"]: r for r in table.to_pylist()})
    return out


@task(name="build-recordings", **TASK_OPTIONS)
def build_recording_shard(
    key: str,
    jobs: tuple[RecordingJob, ...],
    layout: RunLayout,
    info: BuildInfo,
) -> ShardOutcome:
    """Align what needs it, then one speech-only or interleaved sample per recording."""
    opts = layout.storage_options
    corpus_url, rejects_url = layout.shard(CORPUS.name, key), layout.shard(CORPUS_REJECTS, key)
    aligned = _alignments(jobs, layout, info)
    if exists(corpus_url, opts):
        return ShardOutcome(
            key,
            corpus_url,
            rejects_url,
            aligned.url,
            aligned.rejects_url,
            _rows(corpus_url, opts),
            len(aligned.rejects),
            0,
            True,
        )
    tok = text_tokenizer_for(info.tokenizer)
    units = _units_rows(jobs, opts)
    rows = []
    for job in jobs:
        rec = {"id": job.id, "sha256": job.sha256, "duration_s": job.duration_s}
        words = list(job.words) if job.words else aligned.words.get(job.id)
        if job.kind == "interleaved" and words:
            row = interleaved_sample(rec, units[job.id], words, tok, info.config)
        else:  # drawn speech-only, or the alignment was rejected: the units still make a sample
            row = speech_sample(rec, units[job.id], tok, info.config)
        rows.append({**row, "build_key": info.build_key})
    write_atomic(to_arrow(aligned.rejects, REJECTS), rejects_url, opts)
    write_atomic(to_arrow(rows, CORPUS), corpus_url, opts)
    return ShardOutcome(
        key,
        corpus_url,
        rejects_url,
        aligned.url,
        aligned.rejects_url,
        len(rows),
        len(aligned.rejects),
        aligned.aligned_now,
        False,
    )


@task(name="build-texts", **TASK_OPTIONS)
def build_text_shard(
    key: str, docs: tuple[tuple[str, str], ...], layout: RunLayout, info: BuildInfo
) -> ShardOutcome:
    """One ``[Text]`` sample per document."""
    opts = layout.storage_options
    corpus_url, rejects_url = layout.shard(CORPUS.name, key), layout.shard(CORPUS_REJECTS, key)
    if exists(corpus_url, opts):
        rows = _rows(corpus_url, opts)
        return ShardOutcome(key, corpus_url, rejects_url, None, None, rows, 0, 0, True)
    tok = text_tokenizer_for(info.tokenizer)
    rows = [
        {**text_sample(doc_id, text, tok, info.config), "build_key": info.build_key}
        for doc_id, text in docs
    ]
    write_atomic(to_arrow([], REJECTS), rejects_url, opts)
    write_atomic(to_arrow(rows, CORPUS), corpus_url, opts)
    return ShardOutcome(key, corpus_url, rejects_url, None, None, len(rows), 0, 0, False)


def _write_packed(
    layout: RunLayout, table: pa.Table, key: str, seed: int, seq_len: int
) -> tuple[list[str], int]:
    """Pack every sample (in a seeded order that mixes kinds) into ``seq_len`` sequences."""
    if table.num_rows == 0:
        return [], 0
    ids = table["sample_id"].to_pylist()
    order = sorted(range(len(ids)), key=lambda i: (_digest([seed, ids[i]]), ids[i]))
    lists = table["input_ids"].combine_chunks()
    flat, offsets = lists.values.to_numpy(), lists.offsets.to_numpy()
    sequences = pack(((ids[i], flat[offsets[i] : offsets[i + 1]]) for i in order), seq_len)
    urls, total = [], 0
    while chunk := list(itertools.islice(sequences, PACKED_ROWS_PER_FILE)):
        url = layout.shard(PACKED.name, key, len(urls))
        urls.append(write_atomic(to_arrow(chunk, PACKED), url, layout.storage_options))
        total += len(chunk)
    return urls, total


@task(name="finalize-corpus", **TASK_OPTIONS)
def finalize_corpus(
    layout: RunLayout,
    plan: CorpusPlan,
    outcomes: list[ShardOutcome],
    params: dict[str, Any],
    started: float,
) -> CorpusSummary:
    """Validate every shard with GE, commit the tables, write stats, the packed table and the report."""
    opts = layout.storage_options
    parts = [o.corpus for o in outcomes]
    stat_cols = [
        "kind",
        "n_tokens",
        "n_text_tokens",
        "n_speech_tokens",
        "n_marker_tokens",
        "speech_seconds",
        "spans",
    ]
    frames, id_tables = [], []
    for part in parts:  # one read per shard: validation, stats and packing all use it
        table = read_table(part, CORPUS, storage_options=opts)
        validate_frame(table.to_pandas(), CORPUS)
        frames.append(table.select(stat_cols))
        if params.get("pack"):
            id_tables.append(table.select(["sample_id", "input_ids"]))
    summary = CorpusSummary(
        out=layout.root,
        variant=plan.info.config.variant,
        recordings=plan.recordings,
        text_docs=plan.text_docs,
        text_docs_used=plan.text_docs_used,
    )
    stats_frame = (
        pa.concat_tables(frames) if frames else to_arrow([], CORPUS).select(stat_cols)
    ).to_pandas()
    summary.stats = stats_rows(stats_frame, plan.info.config.variant)
    summary.samples = len(stats_frame)
    summary.samples_by_kind = {r["kind"]: r["samples"] for r in summary.stats if r["kind"] != "all"}
    summary.tokens = int(stats_frame["n_tokens"].sum()) if len(stats_frame) else 0
    reject_parts = [o.rejects for o in outcomes]
    if plan.plan_rejects:
        reject_parts.append(
            write_atomic(
                to_arrow(plan.plan_rejects, REJECTS),
                layout.shard(CORPUS_REJECTS, "plan-" + _digest(plan.plan_rejects)),
                opts,
            )
        )
    summary.rejected = sum(o.rejected for o in outcomes) + len(plan.plan_rejects)
    summary.aligned_now = sum(o.aligned for o in outcomes)
    summary.shards_computed = sum(not o.reused for o in outcomes)
    summary.shards_reused = sum(o.reused for o in outcomes)
    align_parts = sorted({o.alignments for o in outcomes if o.alignments})
    align_reject_parts = sorted({o.align_rejects for o in outcomes if o.align_rejects})
    align_rows = sum(_rows(u, opts) for u in align_parts)
    stats_url = write_atomic(
        to_arrow(summary.stats, CORPUS_STATS),
        layout.shard(CORPUS_STATS.name, _digest(summary.stats)),
        opts,
    )
    for name, spec, spec_parts, rows in (
        (CORPUS.name, CORPUS, parts, summary.samples),
        (CORPUS_REJECTS, REJECTS, reject_parts, summary.rejected),
        (ALIGNMENTS.name, ALIGNMENTS, align_parts, align_rows),
        (
            ALIGN_REJECTS,
            REJECTS,
            align_reject_parts,
            sum(_rows(u, opts) for u in align_reject_parts),
        ),
        (CORPUS_STATS.name, CORPUS_STATS, [stats_url], len(summary.stats)),
    ):
        commit_table(layout.table(name), spec, spec_parts, rows, opts)
        summary.tables[name] = layout.table(name)
    if params.get("pack"):
        ids = pa.concat_tables(id_tables) if id_tables else CORPUS.schema.empty_table()
        seed, seq_len = plan.info.config.seed, params["seq_len"]
        key = _digest([seed, seq_len, sorted(parts)])
        packed, summary.packed_sequences = _write_packed(layout, ids, key, seed, seq_len)
        commit_table(layout.table(PACKED.name), PACKED, packed, summary.packed_sequences, opts)
        summary.tables[PACKED.name] = layout.table(PACKED.name)
    summary.seconds = round(time.time() - started, 2)
    report = layout.report("corpus-summary.json")
    write_bytes_atomic(
        json.dumps(summary.as_dict(), indent=1, default=_json_default).encode(), report, opts
    )
    summary.tables["report"] = report
    docs = publish_data_docs(layout)
    if docs:
        summary.tables["data_docs"] = docs
    return summary


def _rows(url: str, opts: Any) -> int:
    fs, path = filesystem(url, opts)
    return int(pq.read_metadata(path, filesystem=fs).num_rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
