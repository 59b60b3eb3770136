"""The wav2vec2 style encoder (Expressive): 100 speaking styles at 1 Hz, with no hub access.

The released model is a ``Wav2Vec2ForSequenceClassification`` whose feature-extractor normalisation
(zero mean, unit variance with eps 1e-7 on the variance, float32) is built in here; projected frames
are mean-pooled per 50-frame window (1 s, the last window partial) and classified.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# Imported eagerly: transformers' lazy imports are not safe when first triggered from worker threads.
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from models.checkpoints import build_loaded, load_tensors, require, weights_file
from models.errors import CheckpointError

POOL_FRAMES = 50
NORM_EPS = 1e-7


def normalize_wav(wav: torch.Tensor) -> torch.Tensor:
    """wav2vec2 input normalisation, computed in numpy float32 like the HF feature extractor."""
    x = wav.detach().cpu().numpy().astype(np.float32).reshape(-1)
    y = (x - x.mean()) / np.sqrt(x.var() + np.float32(NORM_EPS))
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


class StyleEncoder(nn.Module):
    def __init__(self, model: Any, pool_frames: int = POOL_FRAMES) -> None:
        super().__init__()
        self.model: Any = model.eval().requires_grad_(False)
        self.pool_frames = pool_frames

    @classmethod
    def from_dir(cls, folder: Path) -> StyleEncoder:
        config = Wav2Vec2Config.from_json_file(str(require(folder / "config.json")))
        config._attn_implementation = "sdpa"
        state = {
            k: v for k, v in load_tensors(weights_file(folder)).items() if k != "_float_tensor"
        }
        for old, new in (
            ("weight_g", "parametrizations.weight.original0"),
            ("weight_v", "parametrizations.weight.original1"),
        ):
            key = f"wav2vec2.encoder.pos_conv_embed.conv.{old}"
            if key in state:
                state[f"wav2vec2.encoder.pos_conv_embed.conv.{new}"] = state.pop(key)
        model, missing, unexpected = build_loaded(
            lambda: Wav2Vec2ForSequenceClassification(config), state
        )
        missing = [k for k in missing if k != "wav2vec2.masked_spec_embed"]
        if missing or unexpected:
            raise CheckpointError(
                f"{folder}: style encoder state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return cls(model)

    def _pool(self, projected: torch.Tensor) -> torch.Tensor:
        windows = torch.split(projected, self.pool_frames, dim=0)
        return torch.stack([w.mean(dim=0) for w in windows])

    @torch.inference_mode()
    def forward(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """1-D 16 kHz waveforms → style codes (one per started second) each."""
        w2v = self.model.wav2vec2
        device = self.model.projector.weight.device
        hidden = []
        for wav in wavs:
            x = normalize_wav(wav).to(device)[None]
            feats = w2v.feature_extractor(x).transpose(1, 2)
            projected = w2v.feature_projection(feats)
            hidden.append((projected[0] if isinstance(projected, tuple) else projected)[0])
        lengths = [h.shape[0] for h in hidden]
        if len(hidden) == 1:
            states = [w2v.encoder(hidden[0][None]).last_hidden_state[0]]
        else:
            padded = nn.utils.rnn.pad_sequence(hidden, batch_first=True)
            mask = (
                torch.arange(padded.shape[1], device=device)[None, :]
                < torch.tensor(lengths, device=device)[:, None]
            )
            out = w2v.encoder(padded, attention_mask=mask).last_hidden_state
            states = [out[i, :n] for i, n in enumerate(lengths)]
        codes = []
        for h in states:
            pooled = self._pool(self.model.projector(h))
            codes.append(torch.log_softmax(self.model.classifier(pooled), dim=-1).argmax(dim=-1))
        return codes
