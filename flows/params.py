"""Frozen parameter models: one per flow. Field docs become CLI help and deployment docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    device: str = Field(
        default="auto", description="torch device on the workers: auto (CUDA if present), cpu, cuda"
    )
    max_batch: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="audio chunks per forward pass, grouped by length (0: 1 on CPU, where batching does not pay; 16 on GPU)",
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
    device: str = UnitsParams.model_fields["device"]
    max_batch: int = UnitsParams.model_fields["max_batch"]
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
            device=self.device,
            max_batch=self.max_batch,
            shard_size=self.units_shard_size,
        )


class DecodeParams(StageParams):
    units: str = Field(description="units table to resynthesise (a folder or a Parquet file)")
    checkpoints: str | None = UnitsParams.model_fields["checkpoints"]
    speaker: int = Field(default=2, ge=0, description="vocoder speaker id (row of speakers.txt)")
    device: str = UnitsParams.model_fields["device"]
    shard_size: int = Field(default=64, ge=1, le=100_000, description="recordings per decode task")
