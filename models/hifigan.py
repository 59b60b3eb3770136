"""CodeHiFiGAN vocoders of SpiRit-LM (speech-resynthesis family), loaded from the released files.

Base: Hu units + speaker + global style, with a duration predictor for deduplicated units.
Expressive: Hu + per-unit pitch and style codes + speaker. Weight norm is folded at load time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import load_tensors, require
from models.errors import CheckpointError
from schemas.tokens import string_to_units

LRELU_SLOPE = 0.1
BASE_DEFAULT_STYLE = 8  # "conv-default" in the released styles.txt
DEFAULT_SPEAKER = 2


def _fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``w = g · v / ‖v‖`` (norm over all dims but 0, legacy ``weight_norm(dim=0)``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            stem = key[: -len(".weight_v")]
            g = state[f"{stem}.weight_g"]
            norm = value.reshape(value.shape[0], -1).norm(dim=1).reshape(g.shape)
            out[f"{stem}.weight"] = value * (g / norm)
        else:
            out[key] = value
    return out


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=(kernel * d - d) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class _DurationPredictor(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv1d(dim, hidden, kernel, padding=(kernel - 1) // 2), nn.ReLU()
        )
        self.ln1 = nn.LayerNorm(hidden)
        self.conv2 = nn.Sequential(nn.Conv1d(hidden, hidden, kernel, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → log-durations (B, T)."""
        x = self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2))
        x = self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2))
        return self.proj(x).squeeze(-1)


@dataclass(frozen=True)
class VocoderConfig:
    raw: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.raw["embedding_dim"])

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


class CodeHiFiGAN(nn.Module):
    """Generator: embeddings (+ duration expansion) → conv_pre → upsampling + MRF → conv_post → tanh."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = VocoderConfig(cfg)
        dim = self.cfg.dim
        self.dict = nn.Embedding(int(cfg["num_embeddings"]), dim)
        self.f0_dict = (
            nn.Embedding(int(cfg["num_f0_tokens"]), dim) if cfg.get("num_f0_tokens") else None
        )
        self.style_dict = (
            nn.Embedding(int(cfg["num_style_tokens"]), dim) if cfg.get("num_style_tokens") else None
        )
        self.spkr = (
            nn.Embedding(int(cfg.get("num_speakers", 200)), dim) if cfg.get("multispkr") else None
        )
        self.style = (
            nn.Embedding(int(cfg.get("num_styles", 100)), dim) if cfg.get("multistyle") else None
        )
        dur = cfg.get("dur_predictor_params")
        self.dur_predictor = (
            _DurationPredictor(
                int(dur["encoder_embed_dim"]),
                int(dur["var_pred_hidden_dim"]),
                int(dur["var_pred_kernel_size"]),
            )
            if dur
            else None
        )
        channels = int(cfg["upsample_initial_channel"])
        self.conv_pre = nn.Conv1d(int(cfg.get("model_in_dim", 80)), channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        kernels = list(cfg["resblock_kernel_sizes"])
        for i, (rate, kernel) in enumerate(
            zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"], strict=True)
        ):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(
                nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2)
            )
            for k, dilations in zip(kernels, cfg["resblock_dilation_sizes"], strict=True):
                self.resblocks.append(_ResBlock(c_out, k, list(dilations)))
        self.num_kernels = len(kernels)
        self.conv_post = nn.Conv1d(channels // 2 ** len(self.ups), 1, 7, padding=3)
        self.hop = 1
        for rate in cfg["upsample_rates"]:
            self.hop *= int(rate)

    def durations(self, embedded: torch.Tensor) -> torch.Tensor:
        """Predicted repeats per unit: ``max(1, round(exp(log_d) − 1))``."""
        if self.dur_predictor is None:
            raise CheckpointError("this vocoder has no duration predictor")
        log_d = self.dur_predictor(embedded.transpose(1, 2))
        return torch.clamp(torch.round(torch.exp(log_d) - 1).long(), min=1)

    @torch.inference_mode()
    def forward(
        self,
        units: torch.Tensor,
        pitch: torch.Tensor | None = None,
        style_codes: torch.Tensor | None = None,
        speaker: int = DEFAULT_SPEAKER,
        style_id: int = BASE_DEFAULT_STYLE,
        predict_durations: bool = True,
    ) -> torch.Tensor:
        """Units (one per output frame, or deduplicated when ``predict_durations``) → waveform (samples,)."""
        for table, codes, name in (
            (self.dict, units, "hubert"),
            (self.f0_dict, pitch, "pitch"),
            (self.style_dict, style_codes, "style"),
        ):
            if table is not None and codes is not None and codes.numel():
                low, high = int(codes.min()), int(codes.max())
                if low < 0 or high >= table.num_embeddings:
                    bad = low if low < 0 else high
                    raise ValueError(
                        f"{name} unit {bad} is outside 0..{table.num_embeddings - 1}: not this vocoder's units"
                    )
        x = self.dict(units.reshape(1, -1)).transpose(1, 2)  # (1, C, T)
        reps = self.durations(x)[0] if predict_durations else None
        streams = [x]
        for table, codes, name in (
            (self.f0_dict, pitch, "pitch"),
            (self.style_dict, style_codes, "style"),
        ):
            if table is None:
                continue
            if codes is None or codes.numel() != units.numel():
                raise ValueError(f"expressive vocoder needs one {name} code per unit")
            streams.append(table(codes.reshape(1, -1)).transpose(1, 2))
        if reps is not None:
            streams = [torch.repeat_interleave(s, reps, dim=2) for s in streams]
        length = streams[0].shape[2]
        for table, index in ((self.spkr, speaker), (self.style, style_id)):
            if table is not None:
                if not 0 <= index < table.num_embeddings:
                    raise ValueError(f"id {index} outside 0..{table.num_embeddings - 1}")
                streams.append(table.weight[index].reshape(1, -1, 1).expand(1, -1, length))
        h = self.conv_pre(torch.cat(streams, dim=1))
        for i, up in enumerate(self.ups):
            h = up(F.leaky_relu(h, LRELU_SLOPE))
            acc = self.resblocks[i * self.num_kernels](h)
            for j in range(1, self.num_kernels):
                acc = acc + self.resblocks[i * self.num_kernels + j](h)
            h = acc / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(h))).reshape(-1)


class Vocoder(nn.Module):
    """A loaded vocoder with its speaker names (``speakers.txt``) and, for base, style names."""

    def __init__(self, generator: CodeHiFiGAN, speakers: list[str], styles: list[str]) -> None:
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.speakers = speakers
        self.styles = styles

    @property
    def expressive(self) -> bool:
        return self.generator.f0_dict is not None

    @classmethod
    def from_dir(cls, folder: Path) -> Vocoder:
        cfg_path = require(folder / "config.json")
        try:
            cfg = json.loads(cfg_path.read_text())
        except ValueError as exc:
            raise CheckpointError(f"{cfg_path}: invalid JSON ({exc})") from exc
        ckpt = load_tensors(folder / "generator.pt")
        if not isinstance(ckpt, dict) or "generator" not in ckpt:
            raise CheckpointError(
                f"{folder / 'generator.pt'}: expected a dict with a 'generator' state dict"
            )
        generator = CodeHiFiGAN(cfg)
        try:
            generator.load_state_dict(_fold_weight_norm(ckpt["generator"]))
        except RuntimeError as exc:
            raise CheckpointError(
                f"{folder / 'generator.pt'}: does not fit {cfg_path}: {exc}"
            ) from exc
        names = [
            [line.strip() for line in (folder / n).read_text().splitlines()]
            if (folder / n).is_file()
            else []
            for n in ("speakers.txt", "styles.txt")
        ]
        return cls(generator, names[0], names[1])

    def decode_audio(
        self, units_or_string: dict[str, list[int]] | str, speaker: int = DEFAULT_SPEAKER
    ) -> np.ndarray:
        """16 kHz float32 audio from a token string (parsed as the reference does) or per-Hu-token units."""
        units = (
            string_to_units(units_or_string)
            if isinstance(units_or_string, str)
            else units_or_string
        )
        return self.decode(units, speaker=speaker).cpu().numpy().astype(np.float32)

    def decode(self, units: dict[str, list[int]], speaker: int = DEFAULT_SPEAKER) -> torch.Tensor:
        """One value per Hu token in each stream (what ``string_to_units`` returns); the base
        vocoder reads only ``hubert``."""
        if not units.get("hubert"):
            return torch.zeros(0)
        device = self.generator.conv_pre.weight.device
        hubert = torch.tensor(units["hubert"], dtype=torch.long, device=device)
        pitch = style = None
        if self.expressive:
            if "pitch" not in units or "style" not in units:
                raise ValueError(
                    "the expressive vocoder needs pitch and style tokens ([Pi..], [St..])"
                )
            pitch = torch.tensor(units["pitch"], dtype=torch.long, device=device)
            style = torch.tensor(units["style"], dtype=torch.long, device=device)
        return self.generator(hubert, pitch, style, speaker=speaker)
