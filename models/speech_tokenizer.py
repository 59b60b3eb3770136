"""SpeechTokenizer: audio ↔ SpiRit-LM units and token strings, from the released checkpoint layout.

Audio is cut into 100 s chunks; chunks shorter than 1280 samples (80 ms) are skipped, as in the
reference; units of the chunks are concatenated. Batched encoding gives exactly the units of
one-at-a-time encoding (HuBERT's and the style encoder's conv front-ends run per chunk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from models.checkpoints import check_readable, checkpoints_dir, fingerprint, require, weights_file
from models.device import resolve
from models.errors import CheckpointError
from models.hifigan import DEFAULT_SPEAKER, Vocoder
from models.hubert import HubertFeatures
from models.pitch import PitchEncoder
from models.quantizer import load_quantizer
from models.style import StyleEncoder
from schemas.tokens import units_to_string

SAMPLE_RATE = 16_000
MAX_CHUNK = 100 * SAMPLE_RATE
MIN_CHUNK = 1280
Variant = Literal["base", "expressive"]

HUBERT = "speech_tokenizer/hubert_25hz/mhubert_base_25hz.pt"
QUANTIZER = "speech_tokenizer/hubert_25hz/L11_quantizer_500.pt"
PITCH_DIR = "speech_tokenizer/vqvae_f0_quantizer"
STYLE_DIR = "speech_tokenizer/style_encoder_w2v2"
VOCODER_DIRS = {
    "base": "speech_tokenizer/hifigan_spiritlm_base",
    "expressive": "speech_tokenizer/hifigan_spiritlm_expressive_w2v2",
}
Units = dict[str, list[int]]


def as_mono(wav: np.ndarray | torch.Tensor, channel: int | None = None) -> torch.Tensor:
    """1-D float32 tensor; (channels, samples) input is averaged unless a channel is chosen."""
    x = torch.as_tensor(wav).float().squeeze()
    if x.ndim == 2:
        if x.shape[0] > x.shape[1]:
            x = x.t()  # (samples, channels) as soundfile returns it
        x = x.mean(0) if channel is None else x[channel]
    if x.ndim != 1:
        raise ValueError(f"expected mono or (channels, samples) audio, got shape {tuple(x.shape)}")
    return x.contiguous()


def required_files(
    root: Path, variant: str, quantizer: str | Path | None = None, with_vocoder: bool = True
) -> dict[str, Path]:
    """Every file a variant needs, checked before anything loads (fail fast, naming the file)."""
    if variant not in ("base", "expressive"):
        raise CheckpointError(f"unknown variant {variant!r}: expected base or expressive")
    files = {
        "hubert": require(root / HUBERT),
        "quantizer": require(Path(quantizer) if quantizer else root / QUANTIZER),
    }
    if variant == "expressive":
        require(root / PITCH_DIR / "config.yaml")
        files["pitch"] = require(root / PITCH_DIR / "model.pt")
        require(root / STYLE_DIR / "config.json")
        files["style"] = weights_file(root / STYLE_DIR)
    vocoder_dir = root / VOCODER_DIRS[variant]
    if with_vocoder and vocoder_dir.is_dir():
        files["vocoder"] = require(vocoder_dir / "generator.pt")
    return files


def unit_fingerprints(
    root: Path, variant: str, quantizer: str | Path | None = None
) -> dict[str, str]:
    """sha256 of the checkpoints that determine units (the vocoder does not); each file is first
    checked to be loadable, so a corrupt one stops the run at planning, naming it."""
    return {
        name: fingerprint(check_readable(p))
        for name, p in required_files(root, variant, quantizer, with_vocoder=False).items()
    }


def _length_groups(
    order: list[int], lengths: list[int], max_batch: int, batch_seconds: float
) -> list[list[int]]:
    """Consecutive runs of ``order`` (ascending length) within the batch size and padded-seconds bound."""
    limit = batch_seconds * 16_000 if batch_seconds > 0 else float("inf")
    groups: list[list[int]] = []
    for k in order:
        group = groups[-1] if groups else None
        if group and len(group) < max(1, max_batch) and (len(group) + 1) * lengths[k] <= limit:
            group.append(k)
        else:
            groups.append([k])
    return groups


def chunks(wav: torch.Tensor) -> list[torch.Tensor]:
    """100 s pieces, without those shorter than 80 ms."""
    return [c for c in torch.split(wav, MAX_CHUNK) if c.numel() >= MIN_CHUNK]


@dataclass
class SpeechTokenizer:
    """Units and strings for the ``base`` (HuBERT) or ``expressive`` (HuBERT + pitch + style) variant."""

    variant: Variant
    hubert: HubertFeatures
    quantizer: torch.nn.Module
    pitch: PitchEncoder | None
    style: StyleEncoder | None
    vocoder: Vocoder | None
    files: dict[str, Path]
    device: torch.device

    @property
    def fingerprints(self) -> dict[str, str]:
        """sha256 of every checkpoint file in use (hashed on first use, then cached per process)."""
        return {name: fingerprint(path) for name, path in self.files.items()}

    @classmethod
    def from_checkpoint_dir(
        cls,
        path: str | Path | None = None,
        variant: Variant = "base",
        device: str | torch.device | None = None,
        hubert_layer: int = 11,
        quantizer: str | Path | None = None,
        with_vocoder: bool = True,
        f0_extractor: str = "fcpe",
    ) -> SpeechTokenizer:
        """Load from ``path`` (or ``$SPIRITLM_CHECKPOINTS_DIR``); ``quantizer`` may point at a k-means file.

        ``f0_extractor``: ``fcpe`` (the released tokenizer's choice) or ``pyaapt``.
        """
        root = checkpoints_dir(path)
        dev = resolve(device)
        files = required_files(root, variant, quantizer, with_vocoder)
        hubert = HubertFeatures.from_checkpoint(files["hubert"], hubert_layer).to(dev)
        quant = load_quantizer(files["quantizer"]).to(dev)
        pitch = style = None
        if variant == "expressive":
            pitch = PitchEncoder.from_dir(root / PITCH_DIR, dev, extractor=f0_extractor)
            style = StyleEncoder.from_dir(root / STYLE_DIR).to(dev)
        vocoder = load_vocoder(root, variant, dev) if "vocoder" in files else None
        return cls(variant, hubert, quant, pitch, style, vocoder, files, dev)

    @property
    def streams(self) -> tuple[str, ...]:
        return ("hubert", "pitch", "style") if self.variant == "expressive" else ("hubert",)

    def encode_units(
        self,
        wav: np.ndarray | torch.Tensor,
        channel: int | None = None,
        f0_mean: float | None = None,
    ) -> Units:
        """``f0_mean``: the speaker's mean F0 (Hz) for speaker-level pitch normalisation."""
        return self.encode_units_batch([wav], channel=channel, f0_means=[f0_mean])[0]

    def encode_units_batch(
        self,
        wavs: Sequence[np.ndarray | torch.Tensor],
        channel: int | None = None,
        max_batch: int = 8,
        batch_seconds: float = 0.0,
        f0_means: Sequence[float | None] | None = None,
    ) -> list[Units]:
        """Units for many waveforms; chunks are grouped by length, at most ``max_batch`` per forward
        pass and, when ``batch_seconds`` > 0, at most that much padded audio (size × longest)."""
        pieces: list[tuple[int, torch.Tensor]] = []
        for i, wav in enumerate(wavs):
            pieces.extend((i, c) for c in chunks(as_mono(wav, channel)))
        means = [f0_means[i] if f0_means is not None else None for i, _ in pieces]
        encoded = self.encode_chunks([c for _, c in pieces], max_batch, batch_seconds, means)
        merged: list[Units] = [{name: [] for name in self.streams} for _ in wavs]
        for (i, _), units in zip(pieces, encoded, strict=True):  # in audio order per waveform
            for name in self.streams:
                merged[i][name].extend(units[name])
        return merged

    @torch.inference_mode()
    def encode_chunks(
        self,
        pieces: Sequence[torch.Tensor],
        max_batch: int = 8,
        batch_seconds: float = 0.0,
        f0_means: Sequence[float | None] | None = None,
    ) -> list[Units]:
        """Units of each ≤ 100 s, ≥ 80 ms mono chunk, batched by length as ``encode_units_batch``;
        ``f0_means[k]`` (speaker-level pitch normalisation) or None (the chunk's own mean)."""
        order = sorted(range(len(pieces)), key=lambda k: pieces[k].numel())
        results: dict[int, Units] = {}
        for group in _length_groups(order, [p.numel() for p in pieces], max_batch, batch_seconds):
            audio = [pieces[k].to(self.device) for k in group]
            out = {"hubert": [self.quantizer(f) for f in self.hubert(audio)]}
            if self.pitch is not None and self.style is not None:
                means = [f0_means[k] for k in group] if f0_means is not None else None
                out["pitch"] = self.pitch(audio, means)
                out["style"] = self.style(audio)
            for j, k in enumerate(group):
                results[k] = {name: out[name][j].tolist() for name in out}
        return [results[k] for k in range(len(pieces))]

    def units_to_string(self, units: Units) -> str:
        if self.variant == "expressive":
            return units_to_string(units["hubert"], units.get("pitch"), units.get("style"))
        return units_to_string(units["hubert"])

    def encode_string(self, wav: np.ndarray | torch.Tensor, channel: int | None = None) -> str:
        return self.units_to_string(self.encode_units(wav, channel))

    def decode(self, units_or_string: Units | str, speaker_id: int = DEFAULT_SPEAKER) -> np.ndarray:
        """Resynthesise 16 kHz audio from a token string or from per-Hu-token units."""
        if self.vocoder is None:
            raise CheckpointError(
                f"no {VOCODER_DIRS[self.variant]} in the checkpoints folder: cannot decode"
            )
        return self.vocoder.decode_audio(units_or_string, speaker=speaker_id)


def load_vocoder(
    path: str | Path | None, variant: str, device: str | torch.device | None = None
) -> Vocoder:
    """Only the variant's vocoder (decoding needs no encoder): ``path`` or ``$SPIRITLM_CHECKPOINTS_DIR``."""
    if variant not in VOCODER_DIRS:
        raise CheckpointError(f"unknown variant {variant!r}: expected base or expressive")
    folder = checkpoints_dir(path) / VOCODER_DIRS[variant]
    require(folder / "generator.pt")
    vocoder = Vocoder.from_dir(folder).to(resolve(device))
    if vocoder.expressive != (variant == "expressive"):
        raise CheckpointError(f"{folder / 'generator.pt'}: is not a {variant} vocoder")
    return vocoder
