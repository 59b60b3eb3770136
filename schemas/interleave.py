"""Interleaving rules (paper §3): span sampling at word boundaries and unit slicing by time.

Pure functions over word timings and unit arrays; every random choice comes from a generator
seeded by the corpus seed and the item's identity, so a rebuild is byte-identical and adding
items never changes the samples of the others.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

SpanModality = Literal["text", "speech"]
KINDS = ("speech", "text", "interleaved")
# Frames per second of each unit stream as extracted (hop 640, 1280 and 16,000 samples at 16 kHz).
FRAME_RATES = {"hubert": 25.0, "pitch": 12.5, "style": 1.0}
_EPS = 1e-9


@dataclass(frozen=True)
class SpanRules:
    """Span lengths in words, inclusive ranges (defaults: the paper's 10–30 text, 5–15 speech)."""

    text_words: tuple[int, int] = (10, 30)
    speech_words: tuple[int, int] = (5, 15)

    def __post_init__(self) -> None:
        for name, (lo, hi) in (("text", self.text_words), ("speech", self.speech_words)):
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} span words must satisfy 1 <= min <= max, got {lo}-{hi}")

    def bounds(self, modality: SpanModality) -> tuple[int, int]:
        return self.text_words if modality == "text" else self.speech_words


@dataclass(frozen=True)
class Span:
    """Words ``start`` up to (not including) ``stop`` of a recording, in one modality."""

    modality: SpanModality
    start: int
    stop: int


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on the seed and the item's keys (never on the batch)."""
    digest = hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def sample_spans(n_words: int, rng: np.random.Generator, rules: SpanRules) -> list[Span]:
    """Alternating text/speech spans covering all words; the first modality is random.

    Each span's length is drawn uniformly from its modality's range; the last span takes what is
    left. The first span always leaves at least one word, so a recording of two or more words
    yields both modalities.
    """
    if n_words <= 0:
        return []
    modality: SpanModality = "text" if rng.random() < 0.5 else "speech"
    spans: list[Span] = []
    pos = 0
    while pos < n_words:
        lo, hi = rules.bounds(modality)
        stop = min(n_words, pos + int(rng.integers(lo, hi + 1)))
        if not spans and n_words > 1:
            stop = min(stop, n_words - 1)
        spans.append(Span(modality, pos, stop))
        pos = stop
        modality = "speech" if modality == "text" else "text"
    return spans


def frame_range(t0: float, t1: float, rate: float, n_frames: int) -> tuple[int, int]:
    """Frames whose start time lies in [t0, t1): adjacent spans lose no frame and share none.

    The one exception: a span too short to contain a frame start (a 1 Hz style frame inside a
    short span) gets the frame that is playing at ``t0`` (which its neighbour may also hold), so
    every stream is present in every speech span.
    """
    if n_frames <= 0:
        return 0, 0
    first = min(max(math.ceil(t0 * rate - _EPS), 0), n_frames)
    stop = min(max(math.ceil(t1 * rate - _EPS), first), n_frames)
    if stop == first:
        first = min(max(math.floor(t0 * rate + _EPS), 0), n_frames - 1)
        stop = first + 1
    return first, stop


def fill_unaligned(
    words: list[tuple[str, float | None, float | None]], duration_s: float
) -> list[tuple[str, float, float]]:
    """Give words the aligner could not place the gap between their aligned neighbours.

    Their text stays in the corpus; their speech is whatever lies between the words around them.
    """
    out: list[tuple[str, float, float]] = []
    n = len(words)
    for i, (word, start, end) in enumerate(words):
        if start is not None and end is not None:
            out.append((word, start, end))
            continue
        before = next((words[j][2] for j in range(i - 1, -1, -1) if words[j][2] is not None), 0.0)
        after = next((words[j][1] for j in range(i + 1, n) if words[j][1] is not None), duration_s)
        lo = float(before if before is not None else 0.0)
        hi = float(after if after is not None else duration_s)
        out.append((word, lo, max(hi, lo)))
    return out
