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

from schemas.interleave import KINDS
from schemas.tokens import HUBERT_BASE, HUBERT_UNITS, LAST_ID, SPEECH_ID, TEXT_ID

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
    "align_failed",  # the forced aligner found no path through the transcript
    "bad_alignment",  # aligned words outside the audio, non-positive durations, > 50% unaligned
    "bad_text",  # a text-source row that is not usable text
)
STAGES = ("ingest", "align", "units", "corpus", "stsp", "generate", "score")
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


def table_spec(
    name: str,
    version: int,
    row_id: str,
    fields: list[pa.Field],
    rules: tuple[Rule, ...],
    derived: tuple[Derived, ...] = (),
) -> TableSpec:
    """A TableSpec whose arrow schema carries the table name and version in its metadata."""
    metadata = {"spiritflow.table": name, "spiritflow.schema_version": str(version)}
    return TableSpec(name, version, pa.schema(fields, metadata=metadata), row_id, rules, derived)


WORD_TYPE = pa.struct(
    [pa.field("word", pa.string()), pa.field("start", pa.float64()), pa.field("end", pa.float64())]
)

RECORDINGS = table_spec(
    name="recordings",
    version=1,
    row_id="id",
    fields=[
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

REJECTS = table_spec(
    name="rejects",
    version=1,
    row_id="uri",
    fields=[
        pa.field("uri", pa.string(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("source_row", pa.int64()),
    ],
    rules=(
        Rule("uri", "not_null"),
        Rule("stage", "in_set", {"value_set": list(STAGES)}),
        Rule("reason", "in_set", {"value_set": list(REJECT_REASONS)}),
        Rule("error", "not_null"),
    ),
)

DUPLICATES = table_spec(
    name="duplicates",
    version=1,
    row_id="id",
    fields=[
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),
    ],
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
UNITS = table_spec(
    name="units",
    version=1,
    row_id="id",
    fields=[
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


F0_STATS = table_spec(
    name="f0_stats",
    version=1,
    row_id="id",
    fields=[
        pa.field("id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("stats_key", pa.string(), nullable=False),
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("voiced_sum", pa.float64(), nullable=False),
        pa.field("voiced_frames", pa.int64(), nullable=False),
    ],
    rules=(
        Rule("id", "not_null"),
        Rule("id", "unique"),
        Rule("sha256", "regex", {"regex": SHA256_REGEX}),
        Rule("speaker", "not_null"),
        Rule("voiced_frames", "between", {"min_value": 0}),
        Rule("voiced_sum", "between", {"min_value": 0.0}),
    ),
)


def _overrun(column: str, end_key: str) -> Callable[[pd.DataFrame], pd.Series]:
    """How far the last time in a list of structs goes past the recording's duration (s)."""

    def compute(df: pd.DataFrame) -> pd.Series:
        values = []
        for items, duration in zip(df[column], df["duration_s"], strict=True):
            ends = [float(item[end_key]) for item in (items if items is not None else [])]
            values.append(None if not ends or pd.isna(duration) else max(ends) - float(duration))
        return pd.Series(values, index=df.index, dtype="Float64")

    return compute


ALIGNMENTS = table_spec(
    name="alignments",
    version=1,
    row_id="id",
    fields=[
        pa.field("id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("align_key", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("aligner", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("words", pa.list_(WORD_TYPE), nullable=False),
        pa.field("n_words", pa.int32(), nullable=False),
        pa.field("n_unaligned", pa.int32(), nullable=False),
    ],
    rules=(
        Rule("id", "not_null"),
        Rule("id", "unique"),
        Rule("sha256", "regex", {"regex": SHA256_REGEX}),
        Rule("source", "in_set", {"value_set": ["manifest", "aligner"]}),
        Rule("n_words", "between", {"min_value": 1}),
        Rule("words.overrun_s", "between", {"max_value": 0.05}),
    ),
    derived=(Derived("words.overrun_s", _overrun("words", "end")),),
)

SPAN_TYPE = pa.struct(
    [
        pa.field("modality", pa.string()),
        pa.field("start_word", pa.int32()),
        pa.field("stop_word", pa.int32()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
    ]
)
CORPUS_KINDS = KINDS
_LAST_ID = {"base": HUBERT_BASE + HUBERT_UNITS - 1, "expressive": LAST_ID}
_MARKERS = (TEXT_ID, SPEECH_ID)


def _out_of_vocab(df: pd.DataFrame) -> pd.Series:
    """Any id below 0 or past the variant's last SpiRit-LM token."""
    return pd.Series(
        [
            bool(len(ids)) and (int(np.min(ids)) < 0 or int(np.max(ids)) > _LAST_ID.get(v, -1))
            for ids, v in zip(df["input_ids"], df["variant"], strict=True)
        ],
        index=df.index,
        dtype=bool,
    )


def _markers_ok(df: pd.DataFrame) -> pd.Series:
    """<s>, then a marker; markers alternate; their count and the text's agree with the row."""
    ok = []
    for ids, text, n_markers in zip(
        df["input_ids"], df["text"], df["n_marker_tokens"], strict=True
    ):
        arr = np.asarray(ids)
        marks = arr[np.isin(arr, _MARKERS)]
        ok.append(
            len(arr) >= 2
            and int(arr[1]) in _MARKERS
            and len(marks) == int(n_markers)
            and not bool(np.any(marks[1:] == marks[:-1]))
            and str(text).startswith(("[Text]", "[Speech]"))
            and str(text).count("[Text]") + str(text).count("[Speech]") == int(n_markers)
        )
    return pd.Series(ok, index=df.index, dtype=bool)


def _content_tokens(df: pd.DataFrame) -> pd.Series:
    return (df["n_text_tokens"] + df["n_speech_tokens"]).astype("int64")


CORPUS = table_spec(
    name="corpus",
    version=1,
    row_id="sample_id",
    fields=[
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("recording_id", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("text_id", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("n_text_tokens", pa.int32(), nullable=False),
        pa.field("n_speech_tokens", pa.int32(), nullable=False),
        pa.field("n_marker_tokens", pa.int32(), nullable=False),
        pa.field("speech_seconds", pa.float64(), nullable=False),
        pa.field("spans", pa.list_(SPAN_TYPE), nullable=False),
        pa.field("build_key", pa.string(), nullable=False),
    ],
    rules=(
        Rule("sample_id", "not_null"),
        Rule("sample_id", "unique"),
        Rule("kind", "in_set", {"value_set": list(CORPUS_KINDS)}),
        Rule("variant", "in_set", {"value_set": ["base", "expressive"]}),
        Rule("input_ids.out_of_vocab", "in_set", {"value_set": [False]}),
        Rule("markers_ok", "in_set", {"value_set": [True]}),
        Rule("content_tokens", "between", {"min_value": 1}),
        Rule("spans.overrun_s", "between", {"max_value": 0.05}),
    ),
    derived=(
        Derived("input_ids.out_of_vocab", _out_of_vocab),
        Derived("markers_ok", _markers_ok),
        Derived("content_tokens", _content_tokens),
        Derived("spans.overrun_s", _overrun("spans", "end_s")),
    ),
)

CORPUS_STATS = table_spec(
    name="corpus_stats",
    version=1,
    row_id="kind",
    fields=[
        pa.field("kind", pa.string(), nullable=False),
        pa.field("samples", pa.int64(), nullable=False),
        pa.field("tokens", pa.int64(), nullable=False),
        pa.field("text_tokens", pa.int64(), nullable=False),
        pa.field("speech_tokens", pa.int64(), nullable=False),
        pa.field("marker_tokens", pa.int64(), nullable=False),
        pa.field("speech_seconds", pa.float64(), nullable=False),
        pa.field("speech_tokens_per_s", pa.float64()),
        pa.field("expected_tokens_per_s", pa.float64(), nullable=False),
        pa.field("text_span_words", pa.list_(pa.int64()), nullable=False),
        pa.field("speech_span_words", pa.list_(pa.int64()), nullable=False),
    ],
    rules=(Rule("kind", "unique"), Rule("samples", "between", {"min_value": 0})),
)

PACKED = table_spec(
    name="packed",
    version=1,
    row_id="seq_index",
    fields=[
        pa.field("seq_index", pa.int64(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("sample_ids", pa.list_(pa.string()), nullable=False),
        pa.field("doc_starts", pa.list_(pa.int32()), nullable=False),
        pa.field("sample_offsets", pa.list_(pa.int32()), nullable=False),
    ],
    rules=(Rule("seq_index", "unique"),),
)

DIRECTIONS = ("t2t", "t2s", "s2t", "s2s")
STOP_REASONS = ("eos", "length", "runaway")
# What identifies one STSP generation, in both the generations and the scores table.
STSP_ITEM_FIELDS = [
    pa.field("gen_id", pa.string(), nullable=False),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("seed", pa.int32(), nullable=False),
]

GENERATIONS = table_spec(
    name="generations",
    version=1,
    row_id="gen_id",
    fields=[
        *STSP_ITEM_FIELDS,
        pa.field("shots", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("output", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("speech", pa.string(), nullable=False),
        pa.field("hubert_tokens", pa.int32(), nullable=False),
        pa.field("new_tokens", pa.int32(), nullable=False),
        pa.field("stop_reason", pa.string(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("sample_seed", pa.int64(), nullable=False),
        pa.field("audio_uri", pa.string()),
        pa.field("model", pa.string(), nullable=False),
    ],
    rules=(
        Rule("gen_id", "unique"),
        Rule("direction", "in_set", {"value_set": list(DIRECTIONS)}),
        Rule("label", "in_set", {"value_set": list(SENTIMENTS)}),
        Rule("stop_reason", "in_set", {"value_set": list(STOP_REASONS)}),
        Rule("new_tokens", "between", {"min_value": 0}),
        Rule("attempts", "between", {"min_value": 1}),
    ),
)

SCORES = table_spec(
    name="scores",
    version=1,
    row_id="gen_id",
    fields=[
        *STSP_ITEM_FIELDS,
        pa.field("label", pa.string(), nullable=False),
        pa.field("pred", pa.string(), nullable=False),
        pa.field("scorer", pa.string(), nullable=False),
        pa.field("paper_classifier", pa.bool_(), nullable=False),
        pa.field("detail", pa.string()),
    ],
    rules=(
        Rule("gen_id", "unique"),
        Rule("label", "in_set", {"value_set": list(SENTIMENTS)}),
        Rule("pred", "in_set", {"value_set": list(SENTIMENTS)}),
    ),
)

METRICS = table_spec(
    name="metrics",
    version=1,
    row_id="direction",
    fields=[
        pa.field("direction", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("seed", pa.int32()),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("correct", pa.int64(), nullable=False),
        pa.field("accuracy", pa.float64(), nullable=False),
        pa.field("ci_low", pa.float64(), nullable=False),
        pa.field("ci_high", pa.float64(), nullable=False),
        pa.field("mean", pa.float64(), nullable=False),
        pa.field("std", pa.float64(), nullable=False),
        pa.field("confusion", pa.list_(pa.int64()), nullable=False),
        pa.field("scorer", pa.string(), nullable=False),
    ],
    rules=(
        Rule("accuracy", "between", {"min_value": 0.0, "max_value": 1.0}),
        Rule("confusion", "length_between", {"min_value": 9, "max_value": 9}),
    ),
)

TABLES = {
    spec.name: spec
    for spec in (
        RECORDINGS,
        REJECTS,
        DUPLICATES,
        UNITS,
        F0_STATS,
        ALIGNMENTS,
        CORPUS,
        CORPUS_STATS,
        PACKED,
        GENERATIONS,
        SCORES,
        METRICS,
    )
}


def schema_version(schema: pa.Schema) -> int:
    """The version stored in a schema's metadata (what a reader checks a file against)."""
    meta = schema.metadata or {}
    return int(meta.get(b"spiritflow.schema_version", b"0"))
