"""Decoding and measuring audio: stats, formats, resampling/channels, and every file-level reject."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REFERENCE_AUDIO, WriteAudio, tone

from schemas.errors import BadAudioError
from storage.audio import inspect_audio, iter_audio_16k, load_audio_16k, samples_at_16k


def _reason(path: Path | str, **kwargs: object) -> str:
    with pytest.raises(BadAudioError) as info:
        inspect_audio(str(path), **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(info.value)
    return info.value.reason


def test_stats_of_a_tone_with_silence(write_audio: WriteAudio) -> None:
    data = np.concatenate([tone(1.0, amp=0.5), np.zeros(16_000, dtype=np.float32)])
    path = write_audio("half_silent.wav", data=data, subtype="FLOAT")
    stats = inspect_audio(str(path))
    assert stats.sample_rate == 16_000 and stats.channels == 1 and stats.frames == 32_000
    assert stats.duration_s == pytest.approx(2.0)
    assert stats.peak == pytest.approx(0.5, abs=1e-3)
    assert stats.rms == pytest.approx(0.5 / np.sqrt(2) / np.sqrt(2), rel=1e-3)
    assert stats.silence_share == pytest.approx(0.5, abs=0.02)
    assert stats.clipped_share == 0.0
    assert stats.format == "WAV" and len(stats.sha256) == 64 and stats.bytes == path.stat().st_size


def test_clipping_is_measured(write_audio: WriteAudio) -> None:
    data = np.clip(tone(1.0, amp=2.0), -1.0, 1.0)
    stats = inspect_audio(str(write_audio("clipped.wav", data=data)))
    assert 0.3 < stats.clipped_share < 0.9


@pytest.mark.parametrize("ext, kwargs", [("wav", {}), ("flac", {}), ("ogg", {}), ("mp3", {})])
def test_formats_decode(write_audio: WriteAudio, ext: str, kwargs: dict[str, object]) -> None:
    stats = inspect_audio(str(write_audio(f"a.{ext}", seconds=1.5, rate=22_050, **kwargs)))
    assert stats.sample_rate == 22_050
    assert stats.duration_s == pytest.approx(1.5, abs=0.06)
    assert stats.peak == pytest.approx(0.5, abs=0.05)


def test_stereo_44k_resampled_length_and_mono_mix(write_audio: WriteAudio) -> None:
    left = tone(1.0, rate=44_100, amp=0.4)
    right = np.zeros_like(left)
    path = write_audio("stereo.flac", data=np.stack([left, right], axis=1), rate=44_100)
    stats = inspect_audio(str(path))
    assert (stats.channels, stats.sample_rate, stats.frames) == (2, 44_100, 44_100)
    wav = load_audio_16k(str(path))
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == stats.num_samples_16k == samples_at_16k(44_100, 44_100) == 16_000
    assert np.abs(wav).max() == pytest.approx(0.2, abs=0.01)  # channels averaged
    right_only = load_audio_16k(str(path), channel=1)
    assert np.abs(right_only).max() < 1e-3


@pytest.mark.parametrize(
    "rate, channels, ext",
    [
        (16_000, 1, "wav"),
        (44_100, 2, "flac"),
        (48_000, 1, "wav"),
        (22_050, 1, "ogg"),
        (8_000, 1, "wav"),
        (11_025, 2, "wav"),
    ],
)
def test_streamed_blocks_equal_the_whole_file_resampled(
    write_audio: WriteAudio, rate: int, channels: int, ext: str
) -> None:
    """Blocks are what resampling the whole file at once gives (the reference's way), cut in order."""
    import torch
    import torchaudio.functional as taf

    rng = np.random.default_rng(rate)
    data = (rng.standard_normal((int(rate * 5.37), channels)) * 0.1).astype(np.float32)
    path = write_audio(
        f"noise.{ext}", data=data, rate=rate, subtype="FLOAT" if ext == "wav" else None
    )
    whole, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = np.ascontiguousarray(whole.mean(axis=1), dtype=np.float32)
    expected = mono if sr == 16_000 else taf.resample(torch.from_numpy(mono), sr, 16_000).numpy()
    blocks = list(iter_audio_16k(str(path), block_samples=16_000))
    assert [len(b) for b in blocks[:-1]] == [16_000] * (len(blocks) - 1)
    assert 0 < len(blocks[-1]) <= 16_000
    streamed = np.concatenate(blocks)
    assert len(streamed) == len(expected)
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=1e-6)
    if rate == 16_000:
        assert np.array_equal(streamed, expected)
    assert np.array_equal(
        load_audio_16k(str(path)), np.concatenate(list(iter_audio_16k(str(path))))
    )


def test_reference_speech_is_accepted() -> None:
    stats = inspect_audio(str(REFERENCE_AUDIO / "librispeech_7143-88743-0029.flac"))
    assert stats.format == "FLAC" and stats.sample_rate == 16_000
    assert stats.duration_s == pytest.approx(9.1, abs=0.1)
    assert 0.0 < stats.silence_share < 0.6


def test_reject_missing(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.wav") == "missing"


def test_reject_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _reason(tmp_path / "empty.wav") == "empty"


def test_reject_not_audio(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("this is not audio, just text\n" * 20)
    assert _reason(tmp_path / "notes.wav") == "not_audio"


def test_reject_truncated_wav(write_audio: WriteAudio) -> None:
    path = write_audio("cut.wav", seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _reason(path) == "corrupt"


def test_reject_truncated_flac(write_audio: WriteAudio) -> None:
    path = write_audio("cut.flac", seconds=3.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _reason(path) == "corrupt"


def test_reject_garbage_after_valid_header(write_audio: WriteAudio) -> None:
    path = write_audio("garbled.flac", seconds=2.0)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    data[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert _reason(path) in {"corrupt", "not_audio"}


def test_reject_too_short() -> None:
    assert _reason(REFERENCE_AUDIO / "short_60ms.wav") == "too_short"


def test_min_duration_is_configurable(write_audio: WriteAudio) -> None:
    path = write_audio("half.wav", seconds=0.5)
    assert _reason(path, min_duration_s=1.0) == "too_short"
    assert inspect_audio(str(path), min_duration_s=0.4).frames == 8000


def test_reject_non_finite(write_audio: WriteAudio) -> None:
    data = tone(1.0)
    data[12_345] = np.nan
    path = write_audio("nan.wav", data=data, subtype="FLOAT")
    with pytest.raises(BadAudioError) as info:
        inspect_audio(str(path))
    assert info.value.reason == "non_finite" and "frame 12345" in str(info.value)


def test_reject_unreadable(write_audio: WriteAudio, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_audio("locked.wav")
    real_open = builtins.open

    def guarded(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", guarded)
    assert _reason(path) == "unreadable"


def test_long_file_is_streamed_not_loaded(write_audio: WriteAudio) -> None:
    """A 10-minute file is measured block by block: results match a whole-file computation."""
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(16_000 * 600) * 0.1).astype(np.float32)
    path = write_audio("long.wav", data=data, subtype="FLOAT")
    stats = inspect_audio(str(path))
    whole, _ = sf.read(str(path), dtype="float32")
    assert stats.frames == len(whole)
    assert stats.rms == pytest.approx(
        float(np.sqrt(np.mean(whole.astype(np.float64) ** 2))), rel=1e-6
    )
    assert stats.peak == pytest.approx(float(np.abs(whole).max()))
