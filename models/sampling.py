"""Token sampling as transformers' ``generate`` does it, but with one random generator per item.

``generate`` draws every row of a batch from the global generator, so an item's output depends on
which items share its batch. Here each item owns a ``torch.Generator`` seeded from its own seed and
consumes exactly one draw per step, so batched output equals one-at-a-time output; for a single
item the draws are the ones ``generate`` makes after ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """The knobs of one generation call (defaults: the paper's STSP text setting).

    ``top_k=50`` is transformers' default, which the reference leaves active when it samples.
    """

    do_sample: bool = True
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 50
    # Speech loops ("[Hu5][Hu9][Hu5][Hu9]..." forever) stop once a pattern of at most
    # ``runaway_period`` speech tokens has repeated ``runaway_repeats`` times in a row.
    runaway_period: int = 8
    runaway_repeats: int = 12

    def __post_init__(self) -> None:
        if self.temperature <= 0 and self.do_sample:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def item_seed(*parts: object) -> int:
    """A 63-bit seed from a run seed and an item's identity (stable across processes and machines)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def warp(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p on float32 logits (rows), in transformers' order and rules."""
    scores = logits / config.temperature if config.temperature != 1.0 else logits
    if config.top_k > 0:
        k = min(config.top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - config.top_p)
        drop[..., -1:] = False  # keep at least the most likely token
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return scores


def next_tokens(
    logits: torch.Tensor, config: SamplingConfig, generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """One token per row of ``logits`` (rows, vocab); row ``i`` draws only from ``generators[i]``."""
    if not config.do_sample:
        return logits.argmax(dim=-1)
    probs = warp(logits.float(), config).softmax(dim=-1)
    picks = [
        torch.multinomial(probs[i : i + 1], 1, generator=generators[i]).view(())
        for i in range(probs.shape[0])
    ]
    return torch.stack(picks)


def is_runaway(tail: Sequence[int], is_speech: Sequence[bool], config: SamplingConfig) -> bool:
    """The last tokens repeat one short all-speech pattern ``runaway_repeats`` times."""
    for period in range(1, config.runaway_period + 1):
        span = period * config.runaway_repeats
        if len(tail) < span:
            break
        window = tail[-span:]
        if not all(is_speech[-span:]):
            continue
        if all(window[k] == window[k - period] for k in range(period, span)):
            return True
    return False
