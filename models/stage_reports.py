"""Figures of the ingest, units and corpus run reports (inputs are plain columns of the stage's tables)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.report import figure_png, pyplot

Figure = tuple[str, str]  # (caption, base64 PNG)


def ingest_figures(
    durations: Sequence[float], reasons: Mapping[str, int], rates: Sequence[int]
) -> list[Figure]:
    plt = pyplot()
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(10, 2.9))
    left.hist(durations or [0.0], bins=30, color="#4C78A8")
    left.set_xlabel("duration (s)")
    left.set_ylabel("recordings")
    names = sorted(reasons) or ["none"]
    mid.barh(names, [reasons.get(n, 0) for n in names], color="#E45756")
    mid.set_xlabel("rejected files")
    counts = Counter(rates)
    keys = sorted(counts) or [0]
    right.bar([str(k) for k in keys], [counts.get(k, 0) for k in keys], color="#72B7B2")
    right.set_xlabel("sample rate (Hz)")
    return [("Durations, reject reasons and sample rates", figure_png(fig))]


def units_figures(
    streams: Mapping[str, Sequence[Sequence[int]]], durations: Sequence[float]
) -> list[Figure]:
    """Histograms of the unit ids per stream, and HuBERT units per second per recording."""
    plt = pyplot()
    sizes = {"hubert": 501, "pitch": 64, "style": 100}
    present = [s for s in ("hubert", "pitch", "style") if streams.get(s)]
    fig, axes = plt.subplots(1, len(present) + 1, figsize=(3.3 * (len(present) + 1), 2.9))
    for ax, name in zip(axes, present, strict=False):
        values = np.concatenate([np.asarray(v) for v in streams[name] if len(v)] or [np.zeros(0)])
        ax.hist(values, bins=min(sizes[name], 100), range=(0, sizes[name]), color="#4C78A8")
        ax.set_xlabel(f"{name} unit")
    rate_ax = axes[len(present)]
    rates = [
        len(h) / d for h, d in zip(streams.get("hubert", []), durations, strict=False) if d > 0
    ]
    rate_ax.scatter(list(durations)[: len(rates)], rates, s=10, color="#F58518")
    rate_ax.axhline(25, color="grey", linestyle="--", linewidth=1)
    rate_ax.set_xlabel("duration (s)")
    rate_ax.set_ylabel("Hu units / s")
    fig.tight_layout()
    return [("Unit distributions and HuBERT units per second (25 Hz expected)", figure_png(fig))]


def corpus_figures(stats: Sequence[Mapping[str, Any]]) -> list[Figure]:
    """Tokens per modality per sample kind, and span lengths in words."""
    plt = pyplot()
    kinds = [s for s in stats if s["kind"] != "all"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 2.9))
    bottom = np.zeros(len(kinds))
    for column, color in (
        ("text_tokens", "#4C78A8"),
        ("speech_tokens", "#F58518"),
        ("marker_tokens", "#54A24B"),
    ):
        values = np.array([s[column] for s in kinds], dtype=float)
        left.bar(
            [s["kind"] for s in kinds],
            values,
            bottom=bottom,
            color=color,
            label=column.replace("_", " "),
        )
        bottom += values
    left.set_ylabel("tokens")
    left.legend(fontsize=7)
    overall = next((s for s in stats if s["kind"] == "all"), {})
    for column, color in (("text_span_words", "#4C78A8"), ("speech_span_words", "#F58518")):
        hist = list(overall.get(column) or [])
        right.bar(
            np.arange(len(hist)) + (0.2 if column.startswith("speech") else -0.2),
            hist,
            width=0.4,
            color=color,
            label=column.replace("_", " "),
        )
    right.set_xlabel("span length (words)")
    right.set_ylabel("spans")
    right.legend(fontsize=7)
    return [("Tokens per modality and span lengths", figure_png(fig))]
