"""Decode task: units rows → 16 kHz wavs under OUT/audio/ (existing wavs are kept: reruns resume)."""

from __future__ import annotations

import io
from typing import Any

import soundfile as sf
from prefect import task

from models.hifigan import Vocoder
from models.speech_tokenizer import load_vocoder
from schemas.tables import UNITS
from schemas.tokens import units_to_string
from storage.layout import RunLayout
from storage.parquet import exists, read_table, write_bytes_atomic
from tasks.common import cached_model
from tasks.ingest import TASK_OPTIONS


def vocoder_for(checkpoints: str | None, variant: str, device: str) -> Vocoder:
    """Only the vocoder is loaded (once per worker): resynthesis needs no encoder."""
    return cached_model(
        ("vocoder", str(checkpoints), variant, device),
        lambda: load_vocoder(checkpoints, variant, device),
    )


@task(name="list-units", **TASK_OPTIONS)
def list_units(units_url: str, storage_options: dict[str, Any]) -> list[tuple[str, str]]:
    table = read_table(units_url, UNITS, columns=["id", "variant"], storage_options=storage_options)
    return sorted(zip(table["id"].to_pylist(), table["variant"].to_pylist(), strict=True))


@task(name="decode-units", **TASK_OPTIONS)
def decode_units(
    ids: list[str],
    units_url: str,
    layout: RunLayout,
    checkpoints: str | None,
    speaker: int,
    device: str,
) -> dict[str, int]:
    opts = layout.storage_options
    todo = [i for i in ids if not exists(layout.audio(i), opts)]
    if not todo:
        return {"written": 0, "kept": len(ids), "samples": 0}
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_table(units_url, UNITS, storage_options=opts)
    rows = table.filter(pc.is_in(table["id"], value_set=pa.array(todo))).to_pylist()
    samples = 0
    for row in rows:
        # Through the token string, as the reference decodes: pitch/style become one value per Hu token.
        string = units_to_string(row["hubert"], row["pitch"], row["style"])
        wav = (
            vocoder_for(checkpoints, row["variant"], device).decode_audio(string, speaker=speaker)
            if row["hubert"]
            else None
        )
        if wav is None or not len(wav):
            continue
        buf = io.BytesIO()
        sf.write(buf, wav, 16_000, format="WAV", subtype="FLOAT")
        write_bytes_atomic(buf.getvalue(), layout.audio(row["id"]), opts)
        samples += len(wav)
    return {"written": len(rows), "kept": len(ids) - len(todo), "samples": samples}
