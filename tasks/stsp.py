"""STSP tasks: plan the items, build prompts, generate per shard (one model per worker), score, report.

Shards are keyed by their content (prompts, per-item seeds, model and vocoder fingerprints,
sampling settings), so a rerun regenerates only shards that are missing; scores are keyed by the
generation shard and the scorers.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import get_run_logger, task

from models.checkpoints import checkpoints_dir, fingerprint, weights_file
from models.metrics import metric_rows
from models.sampling import item_seed
from models.sentiment import load_speech_scorer, load_text_scorer
from models.speech_tokenizer import VOCODER_DIRS
from models.spiritlm import SpiritLM, checkpoint_variant
from models.stsp import (
    DIRECTION_DATASETS,
    DIRECTIONS,
    FEW_SHOT_DATASET,
    Shot,
    choose_shots,
    half_samples,
    sampling_for,
    split_words,
    stsp_prompt,
)
from models.stsp_report import html_report, markdown_report
from schemas.expectations import validate_frame
from schemas.tables import GENERATIONS, METRICS, REJECTS, SCORES, UNITS
from schemas.tokens import units_to_string
from storage.audio import load_audio_16k
from storage.layout import RunLayout, join
from storage.parquet import (
    commit_table,
    exists,
    read_parts,
    read_table,
    to_arrow,
    write_atomic,
    write_bytes_atomic,
)
from storage.recordings import plan_reject_rows
from storage.stsp import StspItem, load_split
from tasks.common import cached_model, publish_data_docs
from tasks.decode import vocoder_for
from tasks.ingest import TASK_OPTIONS

STSP_CODE_VERSION = 1
STSP_REJECTS = "stsp_rejects"
SPEECH_INPUTS = "stsp/speech_inputs.jsonl"


def recording_id(item: StspItem) -> str:
    """The id an STSP recording gets in the recordings/units tables (unique across datasets)."""
    return f"{item.dataset}.{item.id}"


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :24
    ]


@dataclass(frozen=True)
class GenJob:
    gen_id: str
    direction: str
    dataset: str
    item_id: str
    seed: int
    shots: int
    label: str
    prompt: str
    sample_seed: int


@dataclass
class StspPlan:
    variant: str
    directions: tuple[str, ...]
    items: dict[str, list[StspItem]]
    train: list[StspItem]
    speech_inputs: str | None
    rejects_part: str
    rejected: int


@dataclass
class StspShard:
    key: str
    direction: str
    generations: str
    rows: int
    reused: bool


@dataclass
class StspSummary:
    out: str
    generations: int = 0
    scored: int = 0
    shards_computed: int = 0
    shards_reused: int = 0
    rejected: int = 0
    seconds: float = 0.0
    accuracy: dict[str, float] = field(default_factory=dict)
    scorers: dict[str, str] = field(default_factory=dict)
    paper_classifier: dict[str, bool] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@task(name="plan-stsp", **TASK_OPTIONS)
def plan_stsp(layout: RunLayout, params: dict[str, Any]) -> StspPlan:
    """Read the test (and, for n-shot, train) manifests; record bad rows; list audio to tokenize."""
    opts = layout.storage_options
    variant = checkpoint_variant(params["model"])
    directions = tuple(params["directions"])
    wanted = params.get("datasets") or []
    datasets: dict[str, tuple[bool, bool]] = {}
    for direction in directions:
        in_kind = DIRECTIONS[direction][0]
        for ds in DIRECTION_DATASETS[direction]:
            if wanted and ds not in wanted:
                continue
            text, audio = datasets.get(ds, (False, False))
            datasets[ds] = (text or in_kind == "text", audio or in_kind == "speech")
    items: dict[str, list[StspItem]] = {}
    rejects = []
    for ds, (need_text, need_audio) in sorted(datasets.items()):
        found, bad = load_split(params["data_root"], [ds], "test", need_text, need_audio, opts)
        items[ds] = found[ds][: params["limit"]] if params["limit"] else found[ds]
        rejects.extend(bad)
    train: list[StspItem] = []
    if params["shots"] > 0:
        needs_audio = any("s" in d for d in directions)
        found, bad = load_split(
            params["data_root"], [FEW_SHOT_DATASET], "train", True, needs_audio, opts
        )
        train = found[FEW_SHOT_DATASET]
        rejects.extend(bad)
    rejects_part = write_atomic(
        to_arrow(plan_reject_rows(rejects, "stsp"), REJECTS),
        layout.shard(STSP_REJECTS, _digest([r.uri for r in rejects])),
        opts,
    )
    speech = [i for ds in items for i in items[ds] if i.wav_path]
    speech_inputs = None
    if speech:
        lines = [
            json.dumps(
                {"id": recording_id(i), "path": i.wav_path, "sentiment": i.sentiment, "text": i.asr}
            )
            for i in speech
        ]
        speech_inputs = join(layout.root, SPEECH_INPUTS)
        write_bytes_atomic(("\n".join(lines) + "\n").encode(), speech_inputs, opts)
    get_run_logger().info(
        "stsp: %s, %d test items, %d train items for %d-shot, %d rejected rows",
        ", ".join(f"{ds}={len(v)}" for ds, v in items.items()),
        sum(len(v) for v in items.values()),
        len(train),
        params["shots"],
        len(rejects),
    )
    return StspPlan(variant, directions, items, train, speech_inputs, rejects_part, len(rejects))


def _speech_tokenizer(checkpoints: str | None, variant: str, device: str) -> Any:
    from tasks.units import tokenizer_for

    return tokenizer_for(
        {
            "checkpoints": str(checkpoints_dir(checkpoints)),
            "variant": variant,
            "device": device,
            "hubert_layer": 11,
            "quantizer": None,
            "f0_extractor": "fcpe",
        }
    )


def _speech_halves(
    item: StspItem, params: dict[str, Any], variant: str, opts: dict[str, Any]
) -> tuple[str, str]:
    """Token strings of a train recording's two halves (each half tokenized on its own)."""
    tok = _speech_tokenizer(params["checkpoints"], variant, params["device"])
    first, second = half_samples(load_audio_16k(str(item.wav_uri), opts))
    return tok.encode_string(first), tok.encode_string(second)


def _shots_for(
    direction: str,
    seed: int,
    plan: StspPlan,
    params: dict[str, Any],
    halves: dict[str, tuple[str, str]],
    opts: dict[str, Any],
) -> list[Shot]:
    """The seed's examples for a direction; ``halves`` caches speech halves across directions."""
    if params["shots"] <= 0:
        return []
    pool = plan.train
    picks = choose_shots([i.id for i in pool], [i.sentiment for i in pool], params["shots"], seed)
    in_kind, out_modality = DIRECTIONS[direction]
    shots = []
    for k in picks:
        item = pool[k]
        text = split_words(item.asr or "")
        speech = ("", "")
        if "speech" in (in_kind, out_modality.lower()):
            if item.key not in halves:
                halves[item.key] = _speech_halves(item, params, plan.variant, opts)
            speech = halves[item.key]
        first = speech[0] if in_kind == "speech" else text[0]
        second = speech[1] if out_modality == "SPEECH" else text[1]
        shots.append(Shot(item.key, item.sentiment, first, second))
    return shots


@task(name="stsp-prompts", **TASK_OPTIONS)
def build_jobs(
    layout: RunLayout, plan: StspPlan, params: dict[str, Any]
) -> list[tuple[str, str, list[GenJob]]]:
    """(shard key, direction, jobs) for every direction × dataset × item × seed with a usable input."""
    opts = layout.storage_options
    strings: dict[str, str] = {}
    if plan.speech_inputs and exists(layout.manifest(UNITS.name), opts):
        table = read_table(
            layout.table(UNITS.name),
            UNITS,
            columns=["id", "hubert", "pitch", "style"],
            storage_options=opts,
        ).to_pylist()
        expressive = plan.variant == "expressive"
        strings = {
            r["id"]: units_to_string(r["hubert"], r["pitch"], r["style"])
            if expressive
            else units_to_string(r["hubert"])
            for r in table
            if r["hubert"]
        }
    model_fp = fingerprint(weights_file(Path(params["model"])))
    vocoder_fp = None
    if any(DIRECTIONS[d][1] == "SPEECH" for d in plan.directions):
        vocoder = (
            checkpoints_dir(params["checkpoints"]) / VOCODER_DIRS[plan.variant] / "generator.pt"
        )
        vocoder_fp = fingerprint(vocoder)
    shards: list[tuple[str, str, list[GenJob]]] = []
    halves: dict[str, tuple[str, str]] = {}
    skipped = 0
    for direction in plan.directions:
        in_kind, out_modality = DIRECTIONS[direction]
        config = sampling_for(direction, params["max_new_tokens"])
        for seed in range(params["seeds"]):
            shots = _shots_for(direction, seed, plan, params, halves, opts)
            jobs: list[GenJob] = []
            for ds in DIRECTION_DATASETS[direction]:
                for item in plan.items.get(ds, []):
                    content = item.asr if in_kind == "text" else strings.get(recording_id(item))
                    if not content:
                        skipped += 1  # its audio was rejected at ingest or gave no units
                        continue
                    gen_id = f"{direction}.{params['shots']}shot.{item.dataset}.{item.id}.s{seed}"
                    jobs.append(
                        GenJob(
                            gen_id,
                            direction,
                            ds,
                            item.id,
                            seed,
                            params["shots"],
                            item.sentiment,
                            stsp_prompt(direction, content, shots),
                            item_seed(seed, direction, ds, item.id),
                        )
                    )
            size = params["shard_size"]
            for start in range(0, len(jobs), size):
                group = jobs[start : start + size]
                key = _digest(
                    {
                        "code": STSP_CODE_VERSION,
                        "schema": GENERATIONS.version,
                        "model": model_fp,
                        "sampling": asdict(config),
                        "speaker": params["speaker"] if out_modality == "SPEECH" else None,
                        "vocoder": vocoder_fp if out_modality == "SPEECH" else None,
                        "jobs": [(j.gen_id, j.prompt, j.sample_seed) for j in group],
                    }
                )
                shards.append((key, direction, group))
    if skipped:
        get_run_logger().warning("stsp: %d speech items have no units (see OUT/rejects)", skipped)
    return shards


def _language_model(model_dir: str, device: str) -> SpiritLM:
    return cached_model(
        ("spiritlm", model_dir, device), lambda: SpiritLM.from_checkpoint_dir(model_dir, device)
    )


def _wav_bytes(wav: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, 16_000, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@task(name="stsp-generate", **TASK_OPTIONS)
def generate_shard(
    key: str, direction: str, jobs: list[GenJob], layout: RunLayout, params: dict[str, Any]
) -> StspShard:
    """Generate one shard in batches (skipped when its file exists); speech outputs are vocoded."""
    opts = layout.storage_options
    url = layout.shard(GENERATIONS.name, key)
    if exists(url, opts):
        return StspShard(key, direction, url, len(jobs), True)
    import torch

    torch.set_num_threads(params["threads_per_task"])
    lm = _language_model(params["model"], params["device"])
    out_modality = DIRECTIONS[direction][1]
    results = lm.generate(
        [j.prompt for j in jobs],
        out_modality,  # type: ignore[arg-type]
        sampling_for(direction, params["max_new_tokens"]),
        [j.sample_seed for j in jobs],
        max_batch=params["max_batch"],
    )
    vocoder = None
    if out_modality == "SPEECH":
        vocoder = vocoder_for(params["checkpoints"], lm.variant, params["device"])
    rows = []
    for job, gen in zip(jobs, results, strict=True):
        audio_uri = None
        if vocoder is not None and lm.decodable(gen):
            wav = vocoder.decode_audio(gen.speech, speaker=params["speaker"])
            audio_uri = write_bytes_atomic(_wav_bytes(wav), layout.audio(job.gen_id), opts)
        rows.append(
            {
                **asdict(job),
                "output": out_modality,
                "text": "".join(c for c, kind in gen.runs if kind == "text"),
                "speech": gen.speech,
                "hubert_tokens": gen.hubert_tokens,
                "new_tokens": gen.new_tokens,
                "stop_reason": gen.stop_reason,
                "attempts": gen.attempts,
                "audio_uri": audio_uri,
                "model": lm.fingerprint[:16],
            }
        )
    write_atomic(to_arrow(rows, GENERATIONS), url, opts)
    return StspShard(key, direction, url, len(rows), False)


def _scorers(params: dict[str, Any]) -> tuple[Any, Any]:
    text = cached_model(
        ("text-scorer", params["text_scorer"]), lambda: load_text_scorer(params["text_scorer"])
    )
    speech = cached_model(
        ("speech-scorer", params["speech_scorer"], params["text_scorer"], params["asr"]),
        lambda: load_speech_scorer(params["speech_scorer"], text, params["asr"]),
    )
    return text, speech


@task(name="stsp-score", **TASK_OPTIONS)
def score_shard(shard: StspShard, layout: RunLayout, params: dict[str, Any]) -> str:
    """Score one generation shard with the output modality's scorer (skipped when already scored)."""
    opts = layout.storage_options
    key = _digest([shard.key, params["text_scorer"], params["speech_scorer"], params["asr"]])
    url = layout.shard(SCORES.name, key)
    if exists(url, opts):
        return url
    rows = read_table(shard.generations, GENERATIONS, storage_options=opts).to_pylist()
    text_scorer, speech_scorer = _scorers(params)
    if DIRECTIONS[shard.direction][1] == "TEXT":
        scorer = text_scorer
        labels = text_scorer.score_texts([r["text"] for r in rows])
    else:
        scorer = speech_scorer
        voiced = [k for k, r in enumerate(rows) if r["audio_uri"]]
        heard = speech_scorer.score_audio(
            [load_audio_16k(rows[k]["audio_uri"], opts) for k in voiced]
        )
        # An output the vocoder could not voice (after the retries) says nothing: neutral, recorded.
        labels = [("neutral", "no audio: the output had no voiceable speech tokens")] * len(rows)
        for k, label in zip(voiced, heard, strict=True):
            labels[k] = label
    scores = [
        {
            **{k: r[k] for k in ("gen_id", "direction", "dataset", "item_id", "seed", "label")},
            "pred": pred,
            "scorer": scorer.name,
            "paper_classifier": scorer.paper_classifier,
            "detail": detail,
        }
        for r, (pred, detail) in zip(rows, labels, strict=True)
    ]
    return write_atomic(to_arrow(scores, SCORES), url, opts)


@task(name="finalize-stsp", **TASK_OPTIONS)
def finalize_stsp(
    layout: RunLayout,
    plan: StspPlan,
    shards: list[StspShard],
    score_parts: list[str],
    started: float,
) -> tuple[StspSummary, list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate and commit generations/scores, compute metrics, write the JSON summary."""
    opts = layout.storage_options
    generations = read_parts([s.generations for s in shards], GENERATIONS, opts)
    scores = read_parts(score_parts, SCORES, opts)
    validate_frame(generations.to_pandas(), GENERATIONS)
    validate_frame(scores.to_pandas(), SCORES)
    score_rows = scores.to_pylist()
    metrics = metric_rows(score_rows)
    metrics_table = to_arrow(metrics, METRICS)
    validate_frame(metrics_table.to_pandas(), METRICS)
    metrics_url = write_atomic(
        metrics_table, layout.shard(METRICS.name, _digest(score_parts)), opts
    )
    summary = StspSummary(
        out=layout.root,
        generations=generations.num_rows,
        scored=scores.num_rows,
        shards_computed=sum(not s.reused for s in shards),
        shards_reused=sum(s.reused for s in shards),
        rejected=plan.rejected,
        seconds=round(time.time() - started, 2),
        accuracy={m["direction"]: round(m["mean"], 4) for m in metrics if m["dataset"] == "all"},
        scorers={r["direction"]: r["scorer"] for r in score_rows},
        paper_classifier={r["direction"]: r["paper_classifier"] for r in score_rows},
    )
    for spec, parts, n in (
        (GENERATIONS, [s.generations for s in shards], generations.num_rows),
        (SCORES, score_parts, scores.num_rows),
        (METRICS, [metrics_url], len(metrics)),
    ):
        summary.tables[spec.name] = commit_table(
            layout.table(spec.name), spec, parts, n, opts
        ).rsplit("/", 1)[0]
    summary.tables[STSP_REJECTS] = commit_table(
        layout.table(STSP_REJECTS), REJECTS, [plan.rejects_part], plan.rejected, opts
    ).rsplit("/", 1)[0]
    docs = publish_data_docs(layout)
    if docs:
        summary.tables["data_docs"] = docs
    write_bytes_atomic(
        json.dumps(summary.as_dict(), indent=1).encode(), layout.report("stsp-summary.json"), opts
    )
    return (
        summary,
        metrics,
        generations.select(["gen_id", "direction", "new_tokens", "stop_reason"]).to_pylist(),
    )


@task(name="write-stsp-report", **TASK_OPTIONS)
def write_stsp_report(
    layout: RunLayout,
    scorers: dict[str, str],
    paper_classifier: dict[str, bool],
    metrics: list[dict[str, Any]],
    generations: list[dict[str, Any]],
) -> tuple[str, str]:
    """reports/stsp.md and the self-contained reports/stsp.html; returns (Markdown, HTML URL)."""
    opts = layout.storage_options
    title = "STSP: speech-text sentiment preservation"
    markdown = markdown_report(metrics, scorers, paper_classifier, title)
    write_bytes_atomic(markdown.encode(), layout.report("stsp.md"), opts)
    page = html_report(markdown, metrics, generations, title)
    return markdown, write_bytes_atomic(page.encode(), layout.report("stsp.html"), opts)
