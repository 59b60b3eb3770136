"""STSP metrics: accuracy with 95% bootstrap intervals, mean ± std over seeds, confusion matrices.

Also post-hoc scoring of any predictions file against a reference manifest, which, unlike the
reference script (it skips unmatched ids and so changes the denominator), fails on id mismatches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.errors import ManifestError
from schemas.labels import EMOTION_TO_SENTIMENT
from schemas.tables import SENTIMENTS

BOOTSTRAP_RESAMPLES = 2000
# Paper Table 3 (accuracy, zero-shot unless noted), for the report.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "Spirit LM Base": {"t2t": 0.65, "t2s": 0.33, "s2s": 0.33, "s2t": 0.34},
    "Spirit LM Expressive": {"t2t": 0.63, "t2s": 0.38, "s2s": 0.54, "s2t": 0.36},
    "Expressive, 6-shot": {"t2t": 0.67, "t2s": 0.39, "s2s": 0.51, "s2t": 0.35},
    "Cascade (ASR + Llama 2 + TTS)": {"t2t": 0.65, "t2s": 0.36, "s2s": 0.33, "s2t": 0.33},
    "Random": {"t2t": 0.33, "t2s": 0.33, "s2s": 0.33, "s2t": 0.33},
}


def bootstrap_ci(
    correct: Sequence[bool] | np.ndarray,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``correct`` (seeded: reports are reproducible)."""
    hits = np.asarray(correct, dtype=np.float64)
    if hits.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, hits.size, size=(resamples, hits.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def confusion(labels: Sequence[str], preds: Sequence[str]) -> list[list[int]]:
    """Counts[reference][predicted] in ``SENTIMENTS`` order (positive, negative, neutral)."""
    index = {s: k for k, s in enumerate(SENTIMENTS)}
    counts = [[0] * len(SENTIMENTS) for _ in SENTIMENTS]
    for ref, pred in zip(labels, preds, strict=True):
        counts[index[ref]][index[pred]] += 1
    return counts


@dataclass(frozen=True)
class Accuracy:
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    confusion: list[list[int]]


def accuracy(labels: Sequence[str], preds: Sequence[str], seed: int = 0) -> Accuracy:
    hits = [a == b for a, b in zip(labels, preds, strict=True)]
    low, high = bootstrap_ci(hits, seed=seed)
    n = len(hits)
    return Accuracy(
        n, sum(hits), sum(hits) / n if n else float("nan"), low, high, confusion(labels, preds)
    )


def metric_rows(scores: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (direction, dataset, seed), per (direction, dataset) over seeds, and per direction.

    The per-direction row (dataset ``all``) averages its datasets' accuracies, as the paper's
    S→X figures average EXPRESSO-READ and EMOV; ``mean``/``std`` are over seeds.
    """
    groups: dict[tuple[str, str, int], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    scorer: dict[str, str] = {}
    for row in scores:
        labels, preds = groups[(row["direction"], row["dataset"], int(row["seed"]))]
        labels.append(row["label"])
        preds.append(row["pred"])
        scorer[row["direction"]] = row["scorer"]
    rows: list[dict[str, Any]] = []
    per_seed: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for (direction, dataset, seed), (labels, preds) in sorted(groups.items()):
        acc = accuracy(labels, preds, seed=seed)
        per_seed[(direction, dataset)][seed] = acc.accuracy
        rows.append(_row(direction, dataset, seed, acc, acc.accuracy, 0.0, scorer[direction]))
    directions = sorted({d for d, _ in per_seed})
    for direction in directions:
        datasets = sorted(ds for d, ds in per_seed if d == direction)
        for dataset in datasets:
            keys = [k for k in groups if k[0] == direction and k[1] == dataset]
            labels = [x for k in keys for x in groups[k][0]]
            preds = [x for k in keys for x in groups[k][1]]
            values = list(per_seed[(direction, dataset)].values())
            acc = accuracy(labels, preds)
            rows.append(
                _row(
                    direction,
                    dataset,
                    None,
                    acc,
                    float(np.mean(values)),
                    float(np.std(values)),
                    scorer[direction],
                )
            )
        seeds = sorted({s for ds in datasets for s in per_seed[(direction, ds)]})
        by_seed = [
            float(
                np.mean(
                    [
                        per_seed[(direction, ds)][s]
                        for ds in datasets
                        if s in per_seed[(direction, ds)]
                    ]
                )
            )
            for s in seeds
        ]
        keys = [k for k in groups if k[0] == direction]
        labels = [x for k in keys for x in groups[k][0]]
        preds = [x for k in keys for x in groups[k][1]]
        acc = accuracy(labels, preds)
        rows.append(
            _row(
                direction,
                "all",
                None,
                acc,
                float(np.mean(by_seed)),
                float(np.std(by_seed)),
                scorer[direction],
            )
        )
    return rows


def _row(
    direction: str,
    dataset: str,
    seed: int | None,
    acc: Accuracy,
    mean: float,
    std: float,
    scorer: str,
) -> dict[str, Any]:
    return {
        "direction": direction,
        "dataset": dataset,
        "seed": seed,
        "n": acc.n,
        "correct": acc.correct,
        "accuracy": acc.accuracy,
        "ci_low": acc.ci_low,
        "ci_high": acc.ci_high,
        "mean": mean,
        "std": std,
        "confusion": [c for line in acc.confusion for c in line],
        "scorer": scorer,
    }


def reference_labels(
    rows: Iterable[tuple[int, Mapping[str, Any]]], label: str, where: str
) -> dict[str, str]:
    """id → label of a reference manifest; ``sentiment`` falls back to the mapped ``emotion``."""
    out: dict[str, str] = {}
    for n, row in rows:
        if "__error__" in row or row.get("id") in (None, ""):
            raise ManifestError(f"{where} row {n}: {row.get('__error__', 'no id')}")
        rid = str(row["id"])
        if rid in out:
            raise ManifestError(f"{where}: id {rid!r} appears twice (row {n})")
        value = row.get(label)
        if value in (None, "") and label == "sentiment" and row.get("emotion") not in (None, ""):
            emotion = str(row["emotion"]).lower()
            if emotion not in EMOTION_TO_SENTIMENT:
                raise ManifestError(f"{where} row {n}: emotion {emotion!r} has no sentiment")
            value = EMOTION_TO_SENTIMENT[emotion]
        if value in (None, ""):
            raise ManifestError(f"{where} row {n}: no {label!r} label")
        out[rid] = str(value).strip().lower()
    return out


def predictions(rows: Iterable[tuple[int, Mapping[str, Any]]], where: str) -> dict[str, str]:
    """id → pred of a predictions file (``{"id", "pred"}`` per line); duplicates are errors."""
    out: dict[str, str] = {}
    for n, row in rows:
        if "__error__" in row or row.get("id") in (None, "") or row.get("pred") in (None, ""):
            raise ManifestError(f"{where} row {n}: {row.get('__error__', 'needs id and pred')}")
        rid = str(row["id"])
        if rid in out:
            raise ManifestError(f"{where}: id {rid!r} appears twice (row {n})")
        out[rid] = str(row["pred"]).strip().lower()
    return out


def score_files(
    ref: dict[str, str], pred: dict[str, str], ref_name: str, pred_name: str
) -> Accuracy:
    """Accuracy of ``pred`` against ``ref``; every id must be in both (the error lists a few)."""
    missing = sorted(set(ref) - set(pred))
    extra = sorted(set(pred) - set(ref))
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} reference ids have no prediction (e.g. {', '.join(missing[:5])})"
            )
        if extra:
            parts.append(
                f"{len(extra)} predicted ids are not in {ref_name} (e.g. {', '.join(extra[:5])})"
            )
        raise ManifestError(f"{pred_name}: ids do not match {ref_name}: " + "; ".join(parts))
    ids = sorted(ref)
    labels = [ref[i] for i in ids]
    preds = [pred[i] for i in ids]
    hits = [a == b for a, b in zip(labels, preds, strict=True)]
    low, high = bootstrap_ci(hits)
    known = set(SENTIMENTS)
    matrix = confusion(labels, preds) if set(labels) | set(preds) <= known else []
    return Accuracy(
        len(ids), sum(hits), sum(hits) / len(ids) if ids else float("nan"), low, high, matrix
    )
