"""A long recording costs bounded memory through ingest's inspection and the units extraction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

MEASURE = """
import json, resource, sys
from models.extract import UnitJob, unit_rows
from models.speech_tokenizer import SpeechTokenizer
from storage.audio import inspect_audio

tokenizer = SpeechTokenizer.from_checkpoint_dir(sys.argv[1], "base", with_vocoder=False)
out = {}
for path in sys.argv[2:]:  # shortest first: the peak only grows
    stats = inspect_audio(path)
    job = UnitJob(path, path, stats.sha256, "key", stats.num_samples_16k, stats.duration_s)
    rows, rejects = unit_rows([job], tokenizer, {})
    out[path] = dict(
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        expected_samples=stats.num_samples_16k,
        **{k: rows[0][k] for k in ("num_samples_16k", "n_hubert", "chunks")},
    )
print(json.dumps(out))
"""


def _noise_file(path: Path, seconds: int, rate: int = 44_100) -> Path:
    """Stereo 16-bit noise written 10 s at a time (the test itself must not hold it whole)."""
    rng = np.random.default_rng(seconds)
    with sf.SoundFile(str(path), "w", rate, 2, "PCM_16") as handle:
        for _ in range(seconds // 10):
            handle.write((rng.standard_normal((rate * 10, 2)) * 0.1).astype(np.float32))
    return path


def test_a_long_recording_costs_the_memory_of_a_short_one(
    tmp_path: Path, tiny_checkpoints: Path
) -> None:
    """15 min of 44.1 kHz stereo (318 MB as float32) vs 100 s: decoding whole adds > 500 MB."""
    short = _noise_file(tmp_path / "short.wav", 100)
    long = _noise_file(tmp_path / "long.wav", 900)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tiny_checkpoints), str(short), str(long)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    s, lng = result[str(short)], result[str(long)]
    assert lng["chunks"] == 9 and s["chunks"] == 1
    assert lng["num_samples_16k"] == lng["expected_samples"] == 900 * 16_000
    assert abs(lng["n_hubert"] - 900 * 25) <= lng["chunks"]  # 25 Hz, ±1 per 100 s chunk
    assert lng["peak_mb"] - s["peak_mb"] < 160, result  # measured ≈ 80 MB; whole-file > 500 MB
