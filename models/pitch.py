"""Pitch units (Expressive): FCPE F0 at 200 Hz, utterance (or speaker) mean removed, VQ-VAE codes at 12.5 Hz.

The VQ-VAE (jukebox / speech-resynthesis style) is built from ``config.yaml``; only its encoder and
codebook are needed to tokenize. FCPE is torchfcpe's bundled model (no download).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from models.checkpoints import load_tensors, require
from models.errors import CheckpointError

log = logging.getLogger(__name__)

HOP = 80  # F0 frames at 200 Hz for 16 kHz audio
F0_MIN, F0_MAX, THRESHOLD = 50.0, 1100.0, 0.05
FEATURES = ("f0_interp,vuv", "f0,vuv", "norm_f0_interp,vuv", "norm_f0,vuv")


class _ResBlock(nn.Module):
    def __init__(self, width: int, inner: int, dilation: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(width, inner, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv1d(inner, width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class _Resnet(nn.Module):
    def __init__(self, width: int, depth: int, m_conv: float, growth: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            *[_ResBlock(width, int(m_conv * width), growth**j) for j in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _EncoderLevel(nn.Module):
    def __init__(self, p: dict[str, Any]) -> None:
        super().__init__()
        stride = int(p["strides_t"][0])
        width = int(p["width"])
        blocks: list[nn.Module] = []
        for i in range(int(p["downs_t"][0])):
            c_in = int(p["input_emb_width"]) if i == 0 else width
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(c_in, width, 2 * stride, stride, stride // 2),
                    _Resnet(
                        width,
                        int(p["depth"]),
                        float(p.get("m_conv", 1.0)),
                        int(p.get("dilation_growth_rate", 1)),
                    ),
                )
            )
        blocks.append(nn.Conv1d(width, int(p["output_emb_width"]), 3, 1, 1))
        self.model = nn.Sequential(*blocks)


def normalises_f0(config: dict[str, Any]) -> bool:
    """Whether the VQ-VAE's input has a mean F0 removed (``speaker_norm`` or ``norm_`` features)."""
    return bool(config.get("speaker_norm")) or "norm_" in str(config.get("features", ""))


def load_pitch_config(folder: Path) -> dict[str, Any]:
    """The pitch quantizer's ``config.yaml`` (parsed safely; errors name the file)."""
    cfg_path = require(folder / "config.yaml")
    try:
        config = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{cfg_path}: invalid YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a mapping")
    return config


class F0VQEncoder(nn.Module):
    """VQ-VAE encoder + codebook: (1, 2, T) [f0, vuv] → codes (T // 16,)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        enc = config["encoder_params"]
        if int(enc.get("levels", 1)) != 1 or len(enc["downs_t"]) != 1:
            raise CheckpointError(
                "only single-level F0 VQ-VAEs are supported (the released one has 1 level)"
            )
        self.level = _EncoderLevel(enc)
        vq = config["vq_params"]
        self.register_buffer("codebook", torch.zeros(int(vq["l_bins"]), int(vq["emb_width"])))
        self.normalize = normalises_f0(config)
        if config.get("features") not in FEATURES:
            raise CheckpointError(
                f"unsupported F0 features {config.get('features')!r}; expected one of {FEATURES}"
            )

    codebook: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.level.model(x)[0].t()  # (L, C)
        dist = (
            z.pow(2).sum(-1, keepdim=True)
            - 2 * z @ self.codebook.t()
            + self.codebook.t().pow(2).sum(0, keepdim=True)
        )
        return dist.argmin(dim=-1)


F0_EXTRACTORS = ("fcpe", "pyaapt")


def pyaapt_f0(wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pYAAPT F0 at 200 Hz with SpiRit-LM's settings (20 ms frames, 5 ms hop), unvoiced interpolated.

    The waveform is cropped to whole hops, peak-normalised to 0.95 and padded with 10 ms of zeros
    on each side, as the reference does before calling ``yaapt``.
    """
    try:
        import amfm_decompy.basic_tools as basic
        import amfm_decompy.pYAAPT as yaapt
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CheckpointError("the pyaapt F0 extractor needs the amfm-decompy package") from exc
    x = wav.detach().cpu().numpy().astype(np.float64).reshape(-1)
    x = x[: len(x) // HOP * HOP]
    peak = np.abs(x).max() if len(x) else 0.0
    x = x / peak * 0.95 if peak > 0 else x
    pad = int(20.0 / 1000 * 16000) // 2
    x = np.pad(x, (pad, pad))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter(
            "ignore"
        )  # pYAAPT warns on silent frames; the result is still defined
        pitch = yaapt.yaapt(
            basic.SignalObj(x, 16000),
            frame_length=20.0,
            frame_space=HOP / 16000 * 1000,
            nccf_thresh1=0.25,
            tda_frame_length=25.0,
        )
    f0 = np.asarray(pitch.samp_values, dtype=np.float64)
    vuv = np.asarray(pitch.vuv, dtype=bool)
    voiced = np.flatnonzero(f0 != 0)
    if len(voiced) > 1:
        f0 = np.interp(
            np.arange(len(f0)), voiced, f0[voiced]
        )  # edges take the first/last voiced value
    return torch.from_numpy(f0), torch.from_numpy(vuv.astype(np.float64))


class PitchEncoder(nn.Module):
    """F0 (FCPE, or pYAAPT) → [f0 − mean(voiced f0), vuv] → VQ-VAE codes at 12.5 Hz."""

    def __init__(self, vq: F0VQEncoder, fcpe: Any, extractor: str = "fcpe") -> None:
        super().__init__()
        self.vq = vq.eval().requires_grad_(False)
        self.fcpe = fcpe
        self.extractor = extractor

    @classmethod
    def from_dir(
        cls, folder: Path, device: str | torch.device = "cpu", extractor: str = "fcpe"
    ) -> PitchEncoder:
        cfg_path = folder / "config.yaml"
        vq = F0VQEncoder(load_pitch_config(folder))
        ckpt = load_tensors(folder / "model.pt")
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise CheckpointError(
                f"{folder / 'model.pt'}: expected a dict with a 'model' state dict"
            )
        state = {"codebook": ckpt["model"].get("vq.level_blocks.0.k")}
        prefix = "encoder.level_blocks.0."
        state.update(
            {
                k[len(prefix) :].replace("model.", "level.model.", 1): v
                for k, v in ckpt["model"].items()
                if k.startswith(prefix)
            }
        )
        if state["codebook"] is None:
            raise CheckpointError(f"{folder / 'model.pt'}: no codebook vq.level_blocks.0.k")
        try:
            vq.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{folder / 'model.pt'}: does not fit {cfg_path}: {exc}") from exc
        if extractor not in F0_EXTRACTORS:
            raise CheckpointError(
                f"unknown F0 extractor {extractor!r}: expected one of {', '.join(F0_EXTRACTORS)}"
            )
        if extractor == "pyaapt":
            return cls(vq.to(device), None, extractor)
        from torchfcpe import spawn_bundled_infer_model

        return cls(vq.to(device), spawn_bundled_infer_model(device=str(device)), extractor)

    def f0(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f0 Hz, vuv) at 200 Hz, ``len(wav) // 80 + 1`` frames; unvoiced frames interpolated."""
        target = wav.numel() // HOP + 1
        x = wav.reshape(1, -1, 1).float().to(self.vq.codebook.device)
        kwargs = dict(
            sr=16000,
            decoder_mode="local_argmax",
            threshold=THRESHOLD,
            f0_min=F0_MIN,
            f0_max=F0_MAX,
            output_interp_target_length=target,
            retur_uv=True,
        )
        try:
            f0, uv = self.fcpe.infer(x, interp_uv=True, **kwargs)
        except IndexError:
            # No voiced frame at all (silence): FCPE cannot interpolate; keep f0 = 0 and vuv = 0.
            f0, uv = self.fcpe.infer(x, interp_uv=False, **kwargs)
        return f0.reshape(-1).float(), (1.0 - uv.reshape(-1)).float()

    def f0_vuv(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.f0(wav) if self.extractor == "fcpe" else pyaapt_f0(wav)

    @torch.inference_mode()
    def voiced_f0(self, wav: torch.Tensor) -> tuple[float, int]:
        """(sum of F0 over voiced frames, their count): what a speaker's mean is pooled from."""
        f0, vuv = self.f0_vuv(wav)
        voiced = f0[vuv != 0].double()
        return float(voiced.sum()), int(voiced.numel())

    @torch.inference_mode()
    def forward(
        self, wavs: Sequence[torch.Tensor], f0_means: Sequence[float | None] | None = None
    ) -> list[torch.Tensor]:
        """One code sequence per waveform (FCPE runs per utterance: batching it changes F0 slightly).

        When the quantizer normalises F0, a waveform's ``f0_means`` entry (its speaker's mean, Hz)
        is subtracted; without one, the utterance's own voiced mean is, as in the reference.
        """
        codes = []
        for k, wav in enumerate(wavs):
            f0, vuv = self.f0_vuv(wav)
            if self.vq.normalize:
                given = f0_means[k] if f0_means is not None else None
                voiced = f0[vuv != 0]
                if given is not None or voiced.numel():
                    mean = (
                        torch.tensor(given, dtype=f0.dtype) if given is not None else voiced.mean()
                    )
                    f0 = torch.where(f0 != 0, f0 - mean, f0)
            x = torch.stack([f0, vuv]).float().to(self.vq.codebook.device)
            codes.append(self.vq(x[None]))
        return codes


def load_speaker_stats(path: str | Path) -> dict[str, float]:
    """Speaker → mean F0 (Hz) from the reference's stats file (``torch.save`` of
    ``{speaker: {"f0_mean": …}}``, loaded without unpickling code) or the same as JSON
    (``{speaker: {"f0_mean": …}}`` or ``{speaker: mean}``)."""
    file = Path(path)
    if file.suffix == ".json":
        try:
            raw = json.loads(require(file).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{file}: not valid JSON ({exc})") from exc
    else:
        raw = load_tensors(file)
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{file}: expected a mapping of speaker → {{'f0_mean': Hz}}")
    means = {}
    for speaker, entry in raw.items():
        value = entry.get("f0_mean") if isinstance(entry, dict) else entry
        try:
            mean = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CheckpointError(f"{file}: speaker {speaker!r} has no numeric f0_mean") from None
        if not F0_MIN <= mean <= F0_MAX:
            raise CheckpointError(
                f"{file}: speaker {speaker!r} f0_mean {mean:g} Hz is outside {F0_MIN:g}–{F0_MAX:g} Hz"
            )
        means[str(speaker)] = mean
    return means
