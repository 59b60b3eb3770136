"""HuBERT feature quantizers: the released linear (CTC) quantizer and k-means centroids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoints import load_tensors
from models.errors import CheckpointError


def fill_blanks(codes: torch.Tensor, blank: int) -> torch.Tensor:
    """Replace each CTC blank by the nearest non-blank code on its left, wrapping around the start.

    This is the fixed point of the reference's repeated ``torch.roll(code, 1)`` substitution; an
    all-blank sequence stays as it is (the reference gives up after 10,000 rounds).
    """
    is_blank = codes == blank
    if not bool(is_blank.any()) or bool(is_blank.all()):
        return codes
    n = codes.shape[0]
    positions = torch.arange(n, device=codes.device)
    last_good = torch.where(is_blank, torch.full_like(positions, -1), positions)
    last_good = torch.cummax(last_good, dim=0).values
    wrap = int(positions[~is_blank].max())  # leading blanks take the last non-blank code
    source = torch.where(last_good < 0, torch.full_like(positions, wrap), last_good)
    return codes[source]


class LinearQuantizer(nn.Module):
    """Three linear layers with LeakyReLU → ``vocab_size + 1`` logits (the last is the CTC blank)."""

    def __init__(self, encoder: nn.Sequential, vocab_size: int) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.vocab_size = vocab_size

    @classmethod
    def from_checkpoint(cls, path: Path, ckpt: Any = None) -> LinearQuantizer:
        """``ckpt``: the file's already loaded contents, if the caller has them."""
        ckpt = load_tensors(path) if ckpt is None else ckpt
        try:
            cfg, weights = ckpt["model_cfg"], ckpt["model_weight"]
            vocab = int(cfg["vocab_size"])
            shapes = [tuple(weights[f"{i}.weight"].shape) for i in (0, 2, 4)]
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: not a linear quantizer checkpoint ({exc})") from exc
        if shapes[2][0] != vocab + 1 or shapes[0][1] != int(cfg["dim"]):
            raise CheckpointError(f"{path}: layer shapes {shapes} do not fit model_cfg {dict(cfg)}")
        encoder = nn.Sequential(
            nn.Linear(shapes[0][1], shapes[0][0]),
            nn.LeakyReLU(),
            nn.Linear(shapes[1][1], shapes[1][0]),
            nn.LeakyReLU(),
            nn.Linear(shapes[2][1], shapes[2][0]),
        )
        encoder.load_state_dict(weights)
        return cls(encoder, vocab)

    @torch.inference_mode()
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = torch.log_softmax(self.encoder(features), dim=-1)
        return fill_blanks(logits.argmax(dim=-1), self.vocab_size)


class KMeansQuantizer(nn.Module):
    """Nearest centroid (squared euclidean distance), from ``cluster_centers``/``n_clusters``."""

    centers_t: torch.Tensor
    center_norms: torch.Tensor

    def __init__(self, centers: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centers_t", centers.t().contiguous())
        self.register_buffer("center_norms", (centers**2).sum(1)[None, :])
        self.vocab_size = centers.shape[0]

    @classmethod
    def from_checkpoint(cls, path: Path, states: Any = None) -> KMeansQuantizer:
        states = load_tensors(path) if states is None else states
        if not isinstance(states, dict) or not {"cluster_centers", "n_clusters"} <= set(states):
            raise CheckpointError(f"{path}: not a k-means checkpoint (cluster_centers, n_clusters)")
        centers = torch.as_tensor(states["cluster_centers"]).float()
        if centers.shape[0] != int(states["n_clusters"]):
            raise CheckpointError(
                f"{path}: {centers.shape[0]} centers but n_clusters={states['n_clusters']}"
            )
        return cls(centers)

    @torch.inference_mode()
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        dist = (
            features.pow(2).sum(-1, keepdim=True)
            - 2 * features @ self.centers_t
            + self.center_norms
        )
        return dist.argmin(dim=-1)


def load_quantizer(path: Path) -> LinearQuantizer | KMeansQuantizer:
    """By content: a linear quantizer has ``model_cfg``; a k-means file has ``cluster_centers``."""
    ckpt = load_tensors(path)
    if isinstance(ckpt, dict) and "cluster_centers" in ckpt:
        return KMeansQuantizer.from_checkpoint(path, ckpt)
    return LinearQuantizer.from_checkpoint(path, ckpt)
