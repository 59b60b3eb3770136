"""Sentiment labels and the STSP emotion → sentiment map (REFERENCE.md)."""

from __future__ import annotations

from typing import Any

from schemas.tables import SENTIMENTS

EMOTION_TO_SENTIMENT = {
    "happy": "positive",
    "amused": "positive",
    "sad": "negative",
    "angry": "negative",
    "default": "neutral",
    "neutral": "neutral",
}


def normalize_sentiment(value: Any) -> str | None:
    """Lower-cased sentiment, or ValueError naming the allowed values."""
    if value is None:
        return None
    label = str(value).strip().lower()
    if label not in SENTIMENTS:
        raise ValueError(f"{value!r} is not one of {', '.join(SENTIMENTS)}")
    return label
