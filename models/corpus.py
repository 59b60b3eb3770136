"""Corpus samples (speech-only, text-only, interleaved) as rows of the ``corpus`` table, and packing.

A sample's ``input_ids`` are ``<s>`` + content + ``</s>``; ``text`` is the content as a string, so
``tokenizer.decode_sample(input_ids[1:-1]) == text``. Unit ids come from ``schemas.tokens``
arithmetic (no string tokenizing), text ids from the text tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.text_tokenizer import TextTokenizer
from schemas.interleave import FRAME_RATES, KINDS, SpanRules, frame_range, rng_for, sample_spans
from schemas.tokens import (
    SPEECH_ID,
    SPEECH_TOKEN,
    TEXT_ID,
    TEXT_TOKEN,
    unit_ids_to_string,
    units_to_ids,
)

# Tokens per second of speech measured on the public 9.1 s example (REFERENCE.md), for the stats.
EXPECTED_TOKENS_PER_S = {"base": 18.0, "expressive": 28.0}
Word = tuple[str, float, float]


@dataclass(frozen=True)
class CorpusConfig:
    """Everything that decides a sample's content (part of every cache key)."""

    variant: str = "expressive"
    weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # speech, text, interleaved
    rules: SpanRules = field(default_factory=SpanRules)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in EXPECTED_TOKENS_PER_S:
            raise ValueError(f"variant {self.variant!r}: expected base or expressive")
        if len(self.weights) != 3 or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(
                f"weights {self.weights}: three non-negative numbers (speech, text, interleaved) "
                "that do not all be zero"
            )

    def as_key(self) -> dict[str, Any]:
        return asdict(self)

    def interleaved_share(self) -> float:
        """Of the recordings, the share that become interleaved samples (the rest speech-only)."""
        speech, _, inter = self.weights
        return inter / (speech + inter) if speech + inter else 0.0

    def text_samples_wanted(self, recordings: int) -> int | None:
        """How many text-only samples keep the weights for this many recordings (None: all)."""
        speech, text, inter = self.weights
        if speech + inter == 0:
            return None
        return round(recordings * text / (speech + inter))


def recording_kind(config: CorpusConfig, recording_id: str, has_words: bool) -> str:
    """speech or interleaved: drawn per recording, so adding recordings never changes old ones."""
    if not has_words:
        return "speech"
    draw = rng_for(config.seed, "kind", recording_id).random()
    return "interleaved" if draw < config.interleaved_share() else "speech"


def text_rank(config: CorpusConfig, text_id: str) -> float:
    """Text documents with the lowest ranks are the ones used (a stable, seeded selection)."""
    return float(rng_for(config.seed, "text", text_id).random())


def _streams(
    units: Mapping[str, Any], variant: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    hubert = np.asarray(units["hubert"], dtype=np.int64)
    if variant == "base":
        return hubert, None, None
    pitch, style = units.get("pitch"), units.get("style")
    if pitch is None or style is None:
        raise ValueError(
            "expressive samples need pitch and style units (tokenize with --variant expressive)"
        )
    return hubert, np.asarray(pitch, dtype=np.int64), np.asarray(style, dtype=np.int64)


def _speech_ids(
    streams: tuple[np.ndarray, np.ndarray | None, np.ndarray | None], t0: float, t1: float
) -> np.ndarray:
    """Unit ids of the frames starting in [t0, t1), merged with their true times."""
    hubert, pitch, style = streams
    h0, h1 = frame_range(t0, t1, FRAME_RATES["hubert"], hubert.size)
    if pitch is None or style is None:
        return units_to_ids(hubert[h0:h1], first=(h0, 0, 0))
    p0, p1 = frame_range(t0, t1, FRAME_RATES["pitch"], pitch.size)
    s0, s1 = frame_range(t0, t1, FRAME_RATES["style"], style.size)
    return units_to_ids(hubert[h0:h1], pitch[p0:p1], style[s0:s1], first=(h0, p0, s0))


def _row(
    sample_id: str,
    kind: str,
    config: CorpusConfig,
    pieces: list[tuple[str, list[int] | np.ndarray, str]],
    tok: TextTokenizer,
    spans: list[dict[str, Any]],
    speech_seconds: float,
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble a sample from (modality, ids incl. marker, string incl. marker) pieces."""
    ids = np.concatenate(
        [np.array([tok.bos_id], dtype=np.int32)]
        + [np.asarray(p[1], dtype=np.int32) for p in pieces]
        + [np.array([tok.eos_id], dtype=np.int32)]
    )
    n_speech = sum(len(p[1]) - 1 for p in pieces if p[0] == "speech")
    n_text = sum(len(p[1]) - 1 for p in pieces if p[0] == "text")
    return {
        "sample_id": sample_id,
        "kind": kind,
        "variant": config.variant,
        "recording_id": source.get("recording_id"),
        "sha256": source.get("sha256"),
        "text_id": source.get("text_id"),
        "duration_s": source.get("duration_s"),
        "text": "".join(p[2] for p in pieces),
        "input_ids": ids,
        "n_tokens": int(ids.size),
        "n_text_tokens": n_text,
        "n_speech_tokens": n_speech,
        "n_marker_tokens": len(pieces),
        "speech_seconds": speech_seconds,
        "spans": spans,
    }


def speech_sample(
    recording: Mapping[str, Any], units: Mapping[str, Any], tok: TextTokenizer, config: CorpusConfig
) -> dict[str, Any]:
    """``[Speech]`` + the whole recording's units."""
    streams = _streams(units, config.variant)
    duration = float(recording["duration_s"])
    unit_ids = units_to_ids(*streams)
    piece = (
        "speech",
        np.concatenate([[SPEECH_ID], unit_ids]),
        SPEECH_TOKEN + unit_ids_to_string(unit_ids),
    )
    span = {
        "modality": "speech",
        "start_word": 0,
        "stop_word": 0,
        "start_s": 0.0,
        "end_s": duration,
    }
    return _row(
        f"speech:{recording['id']}",
        "speech",
        config,
        [piece],
        tok,
        [span],
        duration,
        _source(recording),
    )


def interleaved_sample(
    recording: Mapping[str, Any],
    units: Mapping[str, Any],
    words: Sequence[Word],
    tok: TextTokenizer,
    config: CorpusConfig,
) -> dict[str, Any]:
    """Alternating text and speech spans over the aligned words, switching with a marker each time."""
    streams = _streams(units, config.variant)
    rng = rng_for(config.seed, "spans", str(recording["id"]))
    pieces: list[tuple[str, list[int] | np.ndarray, str]] = []
    spans: list[dict[str, Any]] = []
    speech_seconds = 0.0
    for span in sample_spans(len(words), rng, config.rules):
        chosen = words[span.start : span.stop]
        t0, t1 = float(chosen[0][1]), float(chosen[-1][2])
        if span.modality == "text":
            text = " ".join(w[0] for w in chosen)
            pieces.append(("text", [TEXT_ID, *tok.encode(text)], TEXT_TOKEN + text))
        else:
            unit_ids = _speech_ids(streams, t0, t1)
            pieces.append(
                (
                    "speech",
                    np.concatenate([[SPEECH_ID], unit_ids]),
                    SPEECH_TOKEN + unit_ids_to_string(unit_ids),
                )
            )
            speech_seconds += t1 - t0
        spans.append(
            {
                "modality": span.modality,
                "start_word": span.start,
                "stop_word": span.stop,
                "start_s": t0,
                "end_s": t1,
            }
        )
    return _row(
        f"interleaved:{recording['id']}",
        "interleaved",
        config,
        pieces,
        tok,
        spans,
        speech_seconds,
        _source(recording),
    )


def text_sample(
    text_id: str, text: str, tok: TextTokenizer, config: CorpusConfig
) -> dict[str, Any]:
    """``[Text]`` + a text document."""
    piece = ("text", [TEXT_ID, *tok.encode(text)], TEXT_TOKEN + text)
    return _row(f"text:{text_id}", "text", config, [piece], tok, [], 0.0, {"text_id": text_id})


def _source(recording: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "recording_id": recording["id"],
        "sha256": recording["sha256"],
        "duration_s": float(recording["duration_s"]),
    }


def pack(samples: Iterable[tuple[str, np.ndarray]], seq_len: int) -> Iterator[dict[str, Any]]:
    """Concatenate samples into sequences of ``seq_len`` ids, recording where each piece starts.

    A sample longer than the room left continues in the next sequence; ``sample_offsets`` says
    where in its sample each piece starts (0 = the sample's beginning), so boundaries are exact.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len {seq_len}: must be at least 2")
    buffer: list[np.ndarray] = []
    used = 0
    names: list[str] = []
    starts: list[int] = []
    offsets: list[int] = []
    index = 0

    def flush() -> dict[str, Any]:
        return {
            "seq_index": index,
            "input_ids": np.concatenate(buffer).astype(np.int32),
            "sample_ids": list(names),
            "doc_starts": list(starts),
            "sample_offsets": list(offsets),
        }

    for sample_id, ids in samples:
        pos = 0
        while pos < len(ids):
            take = min(seq_len - used, len(ids) - pos)
            buffer.append(np.asarray(ids[pos : pos + take]))
            names.append(sample_id)
            starts.append(used)
            offsets.append(pos)
            used += take
            pos += take
            if used == seq_len:
                yield flush()
                index += 1
                buffer, names, starts, offsets, used = [], [], [], [], 0
    if used:
        yield flush()


def span_histograms(spans: Iterable[Sequence[Mapping[str, Any]]]) -> dict[str, list[int]]:
    """Words per span, per modality: ``hist[k]`` = spans of k words (speech-only samples excluded)."""
    counts: dict[str, dict[int, int]] = {"text": {}, "speech": {}}
    for sample_spans_ in spans:
        for span in sample_spans_:
            n = int(span["stop_word"]) - int(span["start_word"])
            if n > 0:
                counts[span["modality"]][n] = counts[span["modality"]].get(n, 0) + 1
    return {
        modality: [found.get(k, 0) for k in range(max(found, default=-1) + 1)]
        for modality, found in counts.items()
    }


def stats_rows(frame: Any, variant: str) -> list[dict[str, Any]]:
    """One row per sample kind plus ``all``: tokens per modality, speech seconds, tokens/s of speech."""
    rows = []
    for kind in (*KINDS, "all"):
        part = frame if kind == "all" else frame[frame["kind"] == kind]
        seconds = float(part["speech_seconds"].sum())
        speech_tokens = int(part["n_speech_tokens"].sum())
        hist = span_histograms(part["spans"])
        rows.append(
            {
                "kind": kind,
                "samples": len(part),
                "tokens": int(part["n_tokens"].sum()),
                "text_tokens": int(part["n_text_tokens"].sum()),
                "speech_tokens": speech_tokens,
                "marker_tokens": int(part["n_marker_tokens"].sum()),
                "speech_seconds": seconds,
                "speech_tokens_per_s": speech_tokens / seconds if seconds else None,
                "expected_tokens_per_s": EXPECTED_TOKENS_PER_S[variant],
                "text_span_words": hist["text"],
                "speech_span_words": hist["speech"],
            }
        )
    return rows


def config_json(config: CorpusConfig, tokenizer_fingerprint: str) -> str:
    return json.dumps({**config.as_key(), "tokenizer": tokenizer_fingerprint}, sort_keys=True)
