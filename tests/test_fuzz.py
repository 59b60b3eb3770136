"""Garbage in, clean rejects out: random bytes as audio, manifests and token strings (seeded)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from prefect.task_runners import ThreadPoolTaskRunner

from flows.ingest import ingest_flow
from flows.params import IngestParams
from schemas.errors import SpiritflowError
from schemas.tables import REJECT_REASONS
from schemas.tokens import parse_generation, string_to_units
from storage.sources import plan_source
from storage.stsp import read_manifest

SEED = 20261201


def _garbage_audio(folder: Path, rng: random.Random) -> int:
    """Random bytes, truncated real headers and bit-flipped real files under audio names."""
    real = folder / "real.wav"
    t = np.arange(16_000) / 16_000
    sf.write(real, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16_000)
    good = real.read_bytes()
    flac = folder / "real2.flac"
    sf.write(flac, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16_000)
    good_flac = flac.read_bytes()
    n = 0
    for k in range(30):
        ext = rng.choice([".wav", ".flac", ".ogg", ".mp3", ".aiff"])
        kind = k % 3
        if kind == 0:
            data = rng.randbytes(rng.randint(0, 5000))
        elif kind == 1:
            src = rng.choice([good, good_flac])
            data = src[: rng.randint(1, 200)]  # header only, cut anywhere
        else:
            src = bytearray(rng.choice([good, good_flac])[:4000])
            for _ in range(40):
                src[rng.randrange(len(src))] = rng.randrange(256)
            data = bytes(src[:44]) + rng.randbytes(rng.randint(0, 50))  # a header and garbage
        (folder / f"junk{k:02d}{ext}").write_bytes(data)
        n += 1
    return n


def test_garbage_audio_becomes_rejects_and_the_good_file_survives(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    folder = tmp_path / "in"
    folder.mkdir()
    junk = _garbage_audio(folder, rng)
    started = time.monotonic()
    summary = ingest_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        IngestParams(source=str(folder), out=str(tmp_path / "out"), shard_size=8)
    )
    assert time.monotonic() - started < 120  # no hang
    assert summary.good >= 2  # the two real files (a lucky garbage file may also decode)
    assert summary.good + summary.rejected == junk + 2
    import pandas as pd

    rejects = pd.read_parquet(tmp_path / "out" / "rejects")
    assert set(rejects.reason) <= set(REJECT_REASONS) and rejects.error.str.len().min() > 5
    good = set(pd.read_parquet(tmp_path / "out" / "recordings").id)
    assert {"real", "real2"} <= good


def _junk_line(rng: random.Random) -> bytes:
    choices = [
        lambda: rng.randbytes(rng.randint(0, 80)),
        lambda: json.dumps(
            rng.choice(
                [
                    [],
                    1,
                    "x",
                    None,
                    {"id": []},
                    {"path": 3},
                    {"wav_path": "../../etc/passwd", "id": "e"},
                ]
            )
        ).encode(),
        lambda: json.dumps(
            {
                "id": rng.randint(0, 9),
                "wav_path": rng.choice(["a.wav", "", "/abs.wav", "x/../../y.wav"]),
                "emotion": rng.choice(["happy", "??", 7]),
                "asr": rng.choice(["hi", None, 3]),
            }
        ).encode(),
        lambda: b"{" * rng.randint(1, 5000),  # deep or unterminated JSON
    ]
    return rng.choice(choices)()


@pytest.mark.parametrize("case", range(25))
def test_garbage_manifests_give_rejects_or_a_clear_error(tmp_path: Path, case: int) -> None:
    rng = random.Random(SEED + case)
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join(_junk_line(rng) for _ in range(rng.randint(1, 30))))
    for load in (
        lambda: plan_source(str(manifest), str(tmp_path)),
        lambda: read_manifest(str(manifest), "emov", str(tmp_path), True, True),
    ):
        try:
            load()
        except SpiritflowError as exc:  # ManifestError and friends: named, clean
            assert str(manifest) in str(exc) or "row" in str(exc)


_FRAGMENTS = [
    "[Hu",
    "[Pi",
    "[St",
    "]",
    "[",
    "[Text]",
    "[Speech]",
    "12",
    "999",
    "-1",
    "[Hu5]",
    "[Pi63]",
    "[St99]",
    "x",
    " ",
    "é",
    "[Hu501]",
]


@pytest.fixture(scope="module")
def vocoder(tiny_checkpoints: Path) -> object:
    from models.speech_tokenizer import load_vocoder

    return load_vocoder(tiny_checkpoints, "expressive", "cpu")


@pytest.mark.parametrize("case", range(150))
def test_garbage_token_strings_never_crash(case: int, vocoder: object) -> None:
    """Parsing never fails; decoding either voices the string or refuses out-of-range units by name."""
    rng = random.Random(SEED * 7 + case)
    text = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 40)))
    runs = parse_generation(text)
    assert all(kind in ("text", "speech") for _, kind in runs)
    for content, kind in runs:
        if kind == "speech":  # a speech run is speech tokens (the last may be cut off by the end)
            assert content.startswith(("[Hu", "[Pi", "[St"))
    assert sum(len(c) for c, _ in runs) <= len(text)
    units = string_to_units(text)
    assert set(units) <= {"hubert", "pitch", "style"}
    for stream in ("pitch", "style"):
        if stream in units:
            assert len(units[stream]) == len(units["hubert"])  # one value per Hu token
    try:
        wav = vocoder.decode_audio(text)  # type: ignore[attr-defined]
    except ValueError as exc:
        assert "outside" in str(exc) or "needs" in str(exc)
        return
    assert wav.dtype == np.float32 and np.isfinite(wav).all()
    assert len(wav) == 0 or units["hubert"]
