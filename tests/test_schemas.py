"""Schema constants, GE suites generated from them, and validation failures that name the rows."""

from __future__ import annotations

import pandas as pd
import pytest

from schemas.errors import SpiritflowError, TableValidationError
from schemas.expectations import build_suite, validate_frame
from schemas.tables import DUPLICATES, RECORDINGS, REJECTS, TABLES, schema_version
from storage.parquet import to_arrow


def _recording(i: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": f"r{i}",
        "uri": f"/d/r{i}.wav",
        "sha256": f"{i:064x}",
        "bytes": 100,
        "format": "WAV",
        "subtype": "PCM_16",
        "sample_rate": 16000,
        "channels": 1,
        "frames": 16000,
        "duration_s": 1.0,
        "num_samples_16k": 16000,
        "peak": 0.5,
        "rms": 0.2,
        "clipped_share": 0.0,
        "silence_share": 0.1,
        "text": None,
        "speaker": None,
        "emotion": None,
        "sentiment": "neutral",
        "split": None,
        "words": [{"word": "hi", "start": 0.0, "end": 0.5}],
        "source_row": i,
    }
    row.update(overrides)
    return row


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return to_arrow(rows, RECORDINGS).to_pandas()


def test_every_schema_carries_name_and_version() -> None:
    for name, spec in TABLES.items():
        assert spec.schema.metadata[b"spiritflow.table"].decode() == name
        assert schema_version(spec.schema) == spec.version >= 1


def test_suites_have_one_expectation_per_rule() -> None:
    for spec in (RECORDINGS, REJECTS, DUPLICATES):
        suite = build_suite(spec)
        assert len(suite.expectations) == len(spec.rules)
        assert suite.name.endswith(f"{spec.name}.v{spec.version}")


def test_valid_table_passes() -> None:
    assert validate_frame(_frame([_recording(i) for i in range(5)]), RECORDINGS) == 5


def test_failures_name_table_column_and_rows() -> None:
    rows = [
        _recording(0),
        _recording(1, clipped_share=1.5),
        _recording(2, sha256="nothex"),
        _recording(3, id="r0"),
    ]
    with pytest.raises(TableValidationError) as info:
        validate_frame(_frame(rows), RECORDINGS)
    text = str(info.value)
    assert "table 'recordings'" in text
    assert "column 'clipped_share'" in text and "id='r1'" in text
    assert "column 'sha256'" in text and "id='r2'" in text
    assert "column 'id'" in text and "unique" in text


def test_list_lengths_are_checked() -> None:
    with pytest.raises(TableValidationError, match=r"words.*id='r1'"):
        validate_frame(_frame([_recording(0), _recording(1, words=[])]), RECORDINGS)


def test_value_sets_are_checked() -> None:
    rows = [
        {
            "uri": "x",
            "id": None,
            "stage": "ingest",
            "reason": "sunspots",
            "error": "?",
            "source_row": None,
        }
    ]
    with pytest.raises(TableValidationError, match="column 'reason'"):
        validate_frame(to_arrow(rows, REJECTS).to_pandas(), REJECTS)


def test_missing_column_is_named() -> None:
    with pytest.raises(TableValidationError, match="missing column"):
        validate_frame(pd.DataFrame({"id": ["a"]}), DUPLICATES)


def test_writer_names_the_column_of_a_bad_value() -> None:
    with pytest.raises(SpiritflowError, match="column 'sample_rate'"):
        to_arrow([_recording(0, sample_rate="fast")], RECORDINGS)
