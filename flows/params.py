"""Frozen parameter models: one per flow. Field docs become CLI help and deployment docs."""

from __future__ import annotations

from typing import Any

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
