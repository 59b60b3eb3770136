"""Parity with the reference implementation on the tiny released-format checkpoints, and batching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES

from models.errors import CheckpointError
from models.speech_tokenizer import SpeechTokenizer

REF = FIXTURES / "reference-tiny"
EXPECTED = json.loads((REF / "expected.json").read_text())["files"]
CKPT = REF / "checkpoints"


@pytest.fixture(scope="module", params=["base", "expressive"])
def tokenizer(request: pytest.FixtureRequest) -> SpeechTokenizer:
    return SpeechTokenizer.from_checkpoint_dir(CKPT, variant=request.param, device="cpu")


def _audio(name: str) -> np.ndarray:
    wav, sr = sf.read(REF / "audio" / name, dtype="float32")
    assert sr == 16_000
    return wav


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_units_and_strings_equal_the_reference(tokenizer: SpeechTokenizer, name: str) -> None:
    expected = EXPECTED[name]
    units = tokenizer.encode_units(_audio(name))
    ref_units = expected[f"{tokenizer.variant}_units"]
    for stream in tokenizer.streams:
        assert units[stream] == [int(x) for x in ref_units[stream].split()], stream
    assert tokenizer.encode_string(_audio(name)) == expected[f"{tokenizer.variant}_string"]


def test_vocoder_output_equals_the_reference(tokenizer: SpeechTokenizer) -> None:
    speaker = 2 if tokenizer.variant == "base" else 1
    for name, expected in EXPECTED.items():
        if not expected[f"{tokenizer.variant}_string"]:
            continue
        wav = tokenizer.decode(expected[f"{tokenizer.variant}_string"], speaker_id=speaker)
        assert len(wav) == expected[f"{tokenizer.variant}_decode_len"]
        if name == "glide_3s.wav":
            ref = np.load(REF / f"glide_3s.{tokenizer.variant}_decode.npy")
            assert float(np.abs(ref - wav).max()) < 1e-4


def test_batched_units_equal_one_at_a_time(tokenizer: SpeechTokenizer) -> None:
    rng = np.random.default_rng(0)
    speech = _audio("librispeech_7143-88743-0029.flac")
    wavs = []
    for seconds in (1.0, 1.7, 3.2, 6.0, 9.1, 14.5, 30.0):
        n = int(seconds * 16_000)
        clip = np.tile(speech, n // len(speech) + 1)[:n] * rng.uniform(0.5, 1.2)
        wavs.append((clip + 0.003 * rng.standard_normal(n)).astype(np.float32))
    batched = tokenizer.encode_units_batch(wavs, max_batch=4)
    single = [tokenizer.encode_units(w) for w in wavs]
    assert batched == single
    assert tokenizer.encode_units_batch(wavs, max_batch=8, batch_seconds=20.0) == single


def test_batches_are_bounded_by_count_and_padded_seconds() -> None:
    from models.speech_tokenizer import _length_groups

    lengths = [16_000 * s for s in (1, 2, 2, 3, 10, 10, 30)]
    order = list(range(len(lengths)))
    assert _length_groups(order, lengths, 8, 0.0) == [order]
    assert _length_groups(order, lengths, 3, 0.0) == [[0, 1, 2], [3, 4, 5], [6]]
    # 20 s of padded audio: 1+2+2+3 s pieces pad to 4 × 3 s = 12 s; two 10 s pieces = 20 s
    assert _length_groups(order, lengths, 8, 20.0) == [[0, 1, 2, 3], [4, 5], [6]]


def test_chunking_and_stereo() -> None:
    tok = SpeechTokenizer.from_checkpoint_dir(CKPT, variant="base", with_vocoder=False)
    wav = _audio("glide_3s.wav")
    stereo = np.stack([wav, wav])
    assert tok.encode_units(stereo) == tok.encode_units(wav)
    assert tok.encode_units(np.stack([wav, np.zeros_like(wav)]), channel=0) == tok.encode_units(wav)
    assert tok.encode_units(np.zeros(1000, dtype=np.float32)) == {"hubert": []}
    # 100 s chunks: 100 s + 2 s gives the units of the two pieces, concatenated
    long = np.tile(wav, 35)[: 102 * 16_000]
    first, rest = long[: 100 * 16_000], long[100 * 16_000 :]
    assert (
        tok.encode_units(long)["hubert"]
        == tok.encode_units(first)["hubert"] + tok.encode_units(rest)["hubert"]
    )
    # a tail shorter than 80 ms is skipped
    assert tok.encode_units(long[: 100 * 16_000 + 1000]) == tok.encode_units(first)


def test_clear_errors_for_missing_or_wrong_checkpoints(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError, match="checkpoints folder not found"):
        SpeechTokenizer.from_checkpoint_dir(tmp_path / "nope")
    (tmp_path / "speech_tokenizer" / "hubert_25hz").mkdir(parents=True)
    bad = tmp_path / "speech_tokenizer" / "hubert_25hz" / "mhubert_base_25hz.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="L11_quantizer_500.pt: checkpoint file not found"):
        SpeechTokenizer.from_checkpoint_dir(tmp_path)
    quantizer = CKPT / "speech_tokenizer" / "hubert_25hz" / "L11_quantizer_500.pt"
    (bad.parent / quantizer.name).write_bytes(quantizer.read_bytes())
    with pytest.raises(CheckpointError, match="mhubert_base_25hz.pt: cannot load"):
        SpeechTokenizer.from_checkpoint_dir(tmp_path)
    torch.save({"weights": {}}, bad)
    with pytest.raises(
        CheckpointError, match="mhubert_base_25hz.pt: not an s3prl converted HuBERT"
    ):
        SpeechTokenizer.from_checkpoint_dir(tmp_path)
    with pytest.raises(CheckpointError, match="unknown variant"):
        SpeechTokenizer.from_checkpoint_dir(CKPT, variant="fancy")  # type: ignore[arg-type]
    with pytest.raises(
        CheckpointError, match=r"vqvae_f0_quantizer/config.yaml: checkpoint file not found"
    ):
        SpeechTokenizer.from_checkpoint_dir(tmp_path, variant="expressive")


def test_kmeans_quantizer_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A k-means file (cluster_centers / n_clusters) replaces the linear quantizer: nearest centroid."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 32)).astype(np.float32)
    path = tmp_path / "km50.pt"
    torch.save({"cluster_centers": centers, "n_clusters": 50}, path)
    tok = SpeechTokenizer.from_checkpoint_dir(
        CKPT, variant="base", quantizer=path, with_vocoder=False
    )
    wav = torch.from_numpy(_audio("glide_3s.wav"))
    feats = tok.hubert([wav])[0]
    expected = torch.cdist(feats, torch.from_numpy(centers)).argmin(dim=1).tolist()
    assert tok.encode_units(wav)["hubert"] == expected


def test_pyaapt_f0_extractor_gives_pitch_units() -> None:
    """pYAAPT (amfm-decompy) as the F0 extractor: same VQ-VAE, codes at 12.5 Hz, silence handled."""
    tok = SpeechTokenizer.from_checkpoint_dir(
        CKPT, variant="expressive", with_vocoder=False, f0_extractor="pyaapt"
    )
    wav = _audio("librispeech_7143-88743-0029.flac")
    pitch = tok.encode_units(wav)["pitch"]
    assert abs(len(pitch) - (len(wav) // 80 + 1) // 16) <= 1 and all(0 <= p < 64 for p in pitch)
    assert len(set(pitch)) > 3
    assert len(tok.encode_units(np.zeros(16_000, dtype=np.float32))["pitch"]) == 12
    with pytest.raises(CheckpointError, match="unknown F0 extractor"):
        SpeechTokenizer.from_checkpoint_dir(CKPT, variant="expressive", f0_extractor="crepe")
