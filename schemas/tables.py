"""One pyarrow schema constant per table, with its version and validation rules.

Writers always pass the schema; readers cast to it; Great Expectations suites are generated from
the rules here (``schemas.expectations``), so a table has exactly one description.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

SENTIMENTS = ("positive", "negative", "neutral")
REJECT_REASONS = (
    "missing",  # the file does not exist
    "empty",  # zero bytes
    "not_audio",  # no decoder recognises the bytes
    "corrupt",  # recognised but truncated or undecodable
    "too_short",  # shorter than the minimum duration (default 80 ms)
    "non_finite",  # NaN or Inf samples
    "outside_root",  # path escapes the data root (../, absolute, symlink out)
    "unreadable",  # permission or I/O error that retries did not fix
    "bad_row",  # a manifest row that cannot describe a recording
    "bad_words",  # word timings outside the audio or not increasing
)
STAGES = ("ingest", "align", "units", "corpus", "generate", "score")
SHA256_REGEX = r"^[0-9a-f]{64}$"


@dataclass(frozen=True)
class Rule:
    """One expectation on one column; ``kind`` names the check, ``args`` its parameters."""

    column: str
    kind: str  # not_null | unique | between | in_set | regex | length_between
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Derived:
    """A column computed from the table for validation only (list maxima, rate checks)."""

    name: str
    compute: Callable[[pd.DataFrame], pd.Series]


@dataclass(frozen=True)
class TableSpec:
    """A table: its name, version, arrow schema, the column that identifies rows and its rules."""

    name: str
    version: int
    schema: pa.Schema
    row_id: str
    rules: tuple[Rule, ...]
    derived: tuple[Derived, ...] = ()

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


def _with_meta(name: str, version: int, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={"spiritflow.table": name, "spiritflow.schema_version": str(version)},
    )


WORD_TYPE = pa.struct(
    [pa.field("word", pa.string()), pa.field("start", pa.float64()), pa.field("end", pa.float64())]
)

RECORDINGS = TableSpec(
    name="recordings",
    version=1,
    row_id="id",
    schema=_with_meta(
        "recordings",
        1,
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("uri", pa.string(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("bytes", pa.int64(), nullable=False),
            pa.field("format", pa.string(), nullable=False),
            pa.field("subtype", pa.string()),
            pa.field("sample_rate", pa.int32(), nullable=False),
            pa.field("channels", pa.int16(), nullable=False),
            pa.field("frames", pa.int64(), nullable=False),
            pa.field("duration_s", pa.float64(), nullable=False),
            pa.field("num_samples_16k", pa.int64(), nullable=False),
            pa.field("peak", pa.float32(), nullable=False),
            pa.field("rms", pa.float32(), nullable=False),
            pa.field("clipped_share", pa.float32(), nullable=False),
            pa.field("silence_share", pa.float32(), nullable=False),
            pa.field("text", pa.string()),
            pa.field("speaker", pa.string()),
            pa.field("emotion", pa.string()),
            pa.field("sentiment", pa.string()),
            pa.field("split", pa.string()),
            pa.field("words", pa.list_(WORD_TYPE)),
            pa.field("source_row", pa.int64()),
        ],
    ),
    rules=(
        Rule("id", "not_null"),
        Rule("id", "unique"),
        Rule("uri", "not_null"),
        Rule("sha256", "regex", {"regex": SHA256_REGEX}),
        Rule("bytes", "between", {"min_value": 1}),
        Rule("sample_rate", "between", {"min_value": 1, "max_value": 1_536_000}),
        Rule("channels", "between", {"min_value": 1, "max_value": 1024}),
        Rule("frames", "between", {"min_value": 1}),
        Rule("duration_s", "between", {"min_value": 0.0}),
        Rule("num_samples_16k", "between", {"min_value": 1}),
        Rule("peak", "between", {"min_value": 0.0}),
        Rule("rms", "between", {"min_value": 0.0}),
        Rule("clipped_share", "between", {"min_value": 0.0, "max_value": 1.0}),
        Rule("silence_share", "between", {"min_value": 0.0, "max_value": 1.0}),
        Rule("sentiment", "in_set", {"value_set": list(SENTIMENTS)}),
        Rule("words", "length_between", {"min_value": 1}),
    ),
)

REJECTS = TableSpec(
    name="rejects",
    version=1,
    row_id="uri",
    schema=_with_meta(
        "rejects",
        1,
        [
            pa.field("uri", pa.string(), nullable=False),
            pa.field("id", pa.string()),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("error", pa.string(), nullable=False),
            pa.field("source_row", pa.int64()),
        ],
    ),
    rules=(
        Rule("uri", "not_null"),
        Rule("stage", "in_set", {"value_set": list(STAGES)}),
        Rule("reason", "in_set", {"value_set": list(REJECT_REASONS)}),
        Rule("error", "not_null"),
    ),
)

DUPLICATES = TableSpec(
    name="duplicates",
    version=1,
    row_id="id",
    schema=_with_meta(
        "duplicates",
        1,
        [
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("duplicate_of", pa.string(), nullable=False),
        ],
    ),
    rules=(
        Rule("id", "not_null"),
        Rule("id", "unique"),
        Rule("duplicate_of", "not_null"),
        Rule("sha256", "regex", {"regex": SHA256_REGEX}),
    ),
)


def _list_stat(column: str, fn: Callable[[np.ndarray], Any]) -> Callable[[pd.DataFrame], pd.Series]:
    def compute(df: pd.DataFrame) -> pd.Series:
        return pd.Series(
            [None if v is None or len(v) == 0 else int(fn(np.asarray(v))) for v in df[column]],
            index=df.index,
            dtype="Int64",
        )

    return compute


def _gap_per_chunk(
    count: str, hop: float, offset: float = 0.0
) -> Callable[[pd.DataFrame], pd.Series]:
    """(expected − actual) units per 100 s chunk, expected = samples / hop + offset."""

    def compute(df: pd.DataFrame) -> pd.Series:
        chunks = df["chunks"].astype("float64").clip(lower=1)
        return (
            (df["num_samples_16k"] / hop + offset * chunks - df[count].astype("float64")) / chunks
        ).astype("float64")

    return compute


def _missing_units(df: pd.DataFrame) -> pd.Series:
    return ((df["num_samples_16k"] >= UNIT_MIN_SAMPLES) & (df["n_hubert"] == 0)).astype(bool)


UNIT_MIN_SAMPLES = 1280  # chunks shorter than 80 ms are not tokenized (reference rule)
UNITS = TableSpec(
    name="units",
    version=1,
    row_id="id",
    schema=_with_meta(
        "units",
        1,
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("unit_key", pa.string(), nullable=False),
            pa.field("variant", pa.string(), nullable=False),
            pa.field("num_samples_16k", pa.int64(), nullable=False),
            pa.field("duration_s", pa.float64(), nullable=False),
            pa.field("chunks", pa.int32(), nullable=False),
            pa.field("hubert", pa.list_(pa.uint16()), nullable=False),
            pa.field("pitch", pa.list_(pa.uint8())),
            pa.field("style", pa.list_(pa.uint8())),
            pa.field("n_hubert", pa.int32(), nullable=False),
            pa.field("n_pitch", pa.int32()),
            pa.field("n_style", pa.int32()),
            pa.field("checkpoints", pa.string(), nullable=False),
            pa.field("params", pa.string(), nullable=False),
        ],
    ),
    rules=(
        Rule("id", "not_null"),
        Rule("id", "unique"),
        Rule("sha256", "regex", {"regex": SHA256_REGEX}),
        Rule("variant", "in_set", {"value_set": ["base", "expressive"]}),
        Rule("hubert.max", "between", {"min_value": 0, "max_value": 500}),
        Rule("pitch.max", "between", {"min_value": 0, "max_value": 63}),
        Rule("style.max", "between", {"min_value": 0, "max_value": 99}),
        Rule("hubert.gap_per_chunk", "between", {"min_value": -1.0, "max_value": 3.0}),
        Rule("pitch.gap_per_chunk", "between", {"min_value": -1.0, "max_value": 3.0}),
        Rule("style.gap_per_chunk", "between", {"min_value": -2.0, "max_value": 1.0}),
        Rule("hubert.missing", "in_set", {"value_set": [False]}),
    ),
    derived=(
        Derived("hubert.max", _list_stat("hubert", np.max)),
        Derived("pitch.max", _list_stat("pitch", np.max)),
        Derived("style.max", _list_stat("style", np.max)),
        Derived("hubert.gap_per_chunk", _gap_per_chunk("n_hubert", 640.0)),
        Derived("pitch.gap_per_chunk", _gap_per_chunk("n_pitch", 1280.0)),
        Derived("style.gap_per_chunk", _gap_per_chunk("n_style", 16000.0, offset=1.0)),
        Derived("hubert.missing", _missing_units),
    ),
)

TABLES = {spec.name: spec for spec in (RECORDINGS, REJECTS, DUPLICATES, UNITS)}


def schema_version(schema: pa.Schema) -> int:
    """The version stored in a schema's metadata (what a reader checks a file against)."""
    meta = schema.metadata or {}
    return int(meta.get(b"spiritflow.schema_version", b"0"))
