"""The unified SpiRit-LM token space and its string codec, equal to the reference implementation.

Ids: 0–31999 LLaMA-2 text, 32000 ``[Text]``, 32001 ``[Speech]``, 32002–32502 ``[Hu0]``–``[Hu500]``,
32503–32566 ``[Pi0]``–``[Pi63]``, 32567–32666 ``[St0]``–``[St99]`` (REFERENCE.md).
A unit string interleaves the streams by time: Hu at 24.99 Hz (consecutive repeats removed),
Pi at 12.5 Hz (repeats removed), St at 1 Hz (kept); ties keep the order St, Pi, Hu.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

TEXT_TOKEN, SPEECH_TOKEN = "[Text]", "[Speech]"
TEXT_ID, SPEECH_ID = 32000, 32001
HUBERT_BASE, HUBERT_UNITS = 32002, 501
PITCH_BASE, PITCH_UNITS = 32503, 64
STYLE_BASE, STYLE_UNITS = 32567, 100
TEXT_VOCAB = 32000
LAST_ID = STYLE_BASE + STYLE_UNITS - 1  # 32666
HUBERT_RATE, PITCH_RATE, STYLE_RATE = 24.99, 12.5, 1.0
# When pitch tokens come without any style token the reference picks one of its most common
# styles at random; we always take the first of them (71) so decoding is deterministic.
DEFAULT_STYLE = 71
SHORT_SPEECH_RUN = (
    25  # ARBITRARY output: speech runs shorter than this are dropped (reference rule)
)

Modality = Literal["TEXT", "SPEECH", "ARBITRARY"]
STREAMS = {
    "hubert": ("Hu", HUBERT_BASE, HUBERT_UNITS),
    "pitch": ("Pi", PITCH_BASE, PITCH_UNITS),
    "style": ("St", STYLE_BASE, STYLE_UNITS),
}
_PREFIX_BASE = {prefix: (base, n) for prefix, base, n in STREAMS.values()}
_UNIT_RE = re.compile(r"\[(Hu|Pi|St)(\d+)\]")
_SPEECH_TOKEN_RE = re.compile(r"\[(?:Hu|Pi|St)\d+\]")

# Token strings indexed by id - HUBERT_BASE (one table for all three streams).
_TOKEN_TABLE = np.array(
    [f"[Hu{i}]" for i in range(HUBERT_UNITS)]
    + [f"[Pi{i}]" for i in range(PITCH_UNITS)]
    + [f"[St{i}]" for i in range(STYLE_UNITS)],
    dtype=object,
)


def token_id(token: str) -> int:
    """``"[Hu12]"`` → 32014; ``"[Text]"`` → 32000. Raises ValueError for anything else."""
    if token == TEXT_TOKEN:
        return TEXT_ID
    if token == SPEECH_TOKEN:
        return SPEECH_ID
    match = _UNIT_RE.fullmatch(token)
    if not match:
        raise ValueError(f"{token!r} is not a SpiRit-LM special token")
    base, n = _PREFIX_BASE[match.group(1)]
    code = int(match.group(2))
    if code >= n:
        raise ValueError(f"{token!r}: unit {code} out of range 0..{n - 1}")
    return base + code


def token_of(tid: int) -> str:
    """32014 → ``"[Hu12]"`` (the inverse of ``token_id`` for ids 32000–32666)."""
    if tid == TEXT_ID:
        return TEXT_TOKEN
    if tid == SPEECH_ID:
        return SPEECH_TOKEN
    if HUBERT_BASE <= tid <= LAST_ID:
        return str(_TOKEN_TABLE[tid - HUBERT_BASE])
    raise ValueError(f"token id {tid} is not a SpiRit-LM special token (32000..{LAST_ID})")


def _stream(
    codes: Sequence[int] | np.ndarray, name: str, rate: float, dedup: bool, first: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(global token offsets, times in seconds) of one stream, with the reference's dedup rule.

    ``first`` is the frame index of ``codes[0]`` in its recording, so a slice keeps its true times.
    """
    _, base, n = STREAMS[name]
    arr = np.asarray(codes, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = int(np.flatnonzero((arr < 0) | (arr >= n))[0])
        raise ValueError(f"{name} unit {int(arr[bad])} at position {bad} is outside 0..{n - 1}")
    index = np.arange(arr.size)
    if dedup and arr.size:
        keep = np.empty(arr.size, dtype=bool)
        keep[0] = True
        np.not_equal(arr[1:], arr[:-1], out=keep[1:])
        index = index[keep]
    return arr[index] + (base - HUBERT_BASE), (index + first) / rate


def _merged(
    hubert: Sequence[int] | np.ndarray,
    pitch: Sequence[int] | np.ndarray | None,
    style: Sequence[int] | np.ndarray | None,
    first: tuple[int, int, int],
) -> np.ndarray:
    """Token offsets (id - 32002) of the streams merged by time, ties in the order St, Pi, Hu."""
    parts = []
    if style is not None:
        parts.append(_stream(style, "style", STYLE_RATE, dedup=False, first=first[2]))
    if pitch is not None:
        parts.append(_stream(pitch, "pitch", PITCH_RATE, dedup=True, first=first[1]))
    parts.append(_stream(hubert, "hubert", HUBERT_RATE, dedup=True, first=first[0]))
    if len(parts) == 1:
        return parts[0][0]
    offsets = np.concatenate([p[0] for p in parts])
    times = np.concatenate([p[1] for p in parts])
    return offsets[np.argsort(times, kind="stable")]


def units_to_string(
    hubert: Sequence[int] | np.ndarray,
    pitch: Sequence[int] | np.ndarray | None = None,
    style: Sequence[int] | np.ndarray | None = None,
    first: tuple[int, int, int] = (0, 0, 0),
) -> str:
    """Interleave the unit streams into the token string the SpiRit-LM tokenizer produces.

    ``first`` gives the frame index of each stream's first unit when the units are a slice of a
    longer recording (interleaved spans): the merge order then equals the whole recording's.
    """
    return "".join(_TOKEN_TABLE[_merged(hubert, pitch, style, first)].tolist())


def units_to_ids(
    hubert: Sequence[int] | np.ndarray,
    pitch: Sequence[int] | np.ndarray | None = None,
    style: Sequence[int] | np.ndarray | None = None,
    first: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """The token ids of ``units_to_string`` (int32), by arithmetic instead of tokenizing the string."""
    return (_merged(hubert, pitch, style, first) + HUBERT_BASE).astype(np.int32)


def unit_ids_to_string(ids: np.ndarray) -> str:
    """The token string of unit ids (32002–32666), e.g. from ``units_to_ids``."""
    return "".join(_TOKEN_TABLE[np.asarray(ids, dtype=np.int64) - HUBERT_BASE].tolist())


def string_to_units(
    text: str, duplicate_hubert_for_multiple_pitch: bool = False
) -> dict[str, list[int]]:
    """Parse a unit string back to streams, pitch and style repeated to one value per Hu token.

    ``pitch``/``style`` appear only when the string has them; a missing value before the first
    token of a stream takes that stream's first value (the reference's rule).
    """
    hubert: list[int | None] = []
    pitch: list[int | None] = []
    style: list[int | None] = []
    first: dict[str, int | None] = {"Hu": None, "Pi": None, "St": None}
    prev_hu = prev_pi = prev_st = None
    prev_is_pitch = False
    for match in _UNIT_RE.finditer(text):
        kind, code = match.group(1), int(match.group(2))
        if first[kind] is None:
            first[kind] = code
        if kind == "Hu":
            hubert.append(code)
            pitch.append(prev_pi)
            style.append(prev_st)
            prev_hu, prev_is_pitch = code, False
        elif kind == "Pi":
            if duplicate_hubert_for_multiple_pitch and prev_is_pitch:
                hubert.append(prev_hu)
                pitch.append(code)
                style.append(prev_st)
            prev_pi, prev_is_pitch = code, True
        else:
            prev_st = code
    if first["Pi"] is not None and first["St"] is None:
        first["St"] = DEFAULT_STYLE
    units = {"hubert": _filled(hubert, first["Hu"])}
    if first["Pi"] is not None:
        units["pitch"] = _filled(pitch, first["Pi"])
    if first["St"] is not None:
        units["style"] = _filled(style, first["St"])
    return units


def _filled(values: list[int | None], default: int | None) -> list[int]:
    """Missing values take the stream's first value (never None once the stream has a token)."""
    out: list[int] = []
    for value in values:
        chosen = default if value is None else value
        if chosen is not None:
            out.append(chosen)
    return out


def _modality(value: str) -> str:
    up = value.upper()
    if up not in ("TEXT", "SPEECH", "ARBITRARY"):
        raise ValueError(f"output modality {value!r}: expected TEXT, SPEECH or ARBITRARY")
    return up


def build_prompt(inputs: Iterable[tuple[str, str]], output_modality: str) -> str:
    """The reference prompt: a marker at each modality change, content as is, then the output's marker."""
    out = _modality(output_modality)
    pieces: list[str] = []
    prev = None
    for kind, content in inputs:
        k = kind.upper()
        if k not in ("TEXT", "SPEECH"):
            raise ValueError(f"input kind {kind!r}: expected text or speech")
        if k != prev:
            pieces.append(TEXT_TOKEN if k == "TEXT" else SPEECH_TOKEN)
        pieces.append(content)
        prev = k
    if out in ("TEXT", "SPEECH") and prev != out:
        pieces.append(TEXT_TOKEN if out == "TEXT" else SPEECH_TOKEN)
    return "".join(pieces)


def forbidden_token_ids(output_modality: str, expressive: bool) -> list[int]:
    """Ids banned during generation to force the output modality (none for ARBITRARY), ascending."""
    out = _modality(output_modality)
    if out == "ARBITRARY":
        return []
    banned = [TEXT_ID, SPEECH_ID]
    if out == "SPEECH":
        return list(range(TEXT_VOCAB)) + banned
    banned += list(range(HUBERT_BASE, HUBERT_BASE + HUBERT_UNITS))
    if expressive:
        banned += list(range(PITCH_BASE, PITCH_BASE + PITCH_UNITS))
        banned += list(range(STYLE_BASE, STYLE_BASE + STYLE_UNITS))
    return banned


def parse_generation(text: str) -> list[tuple[str, Literal["text", "speech"]]]:
    """Split generated text into runs of speech tokens and of text; ``[Text]``/``[Speech]`` dropped.

    Like the reference, a ``[`` followed by ``Hu``/``Pi``/``St`` opens a speech token that runs to
    the next ``]``; any other ``[`` is text.
    """
    runs: list[tuple[str, Literal["text", "speech"]]] = []
    buf: list[str] = []
    kind: Literal["text", "speech"] | None = None
    i, n = 0, len(text)

    def push(piece: str, piece_kind: Literal["text", "speech"]) -> None:
        nonlocal kind
        if kind is not None and kind != piece_kind and buf:
            runs.append(("".join(buf), kind))
            buf.clear()
        buf.append(piece)
        kind = piece_kind

    while i < n:
        if text[i] == "[":
            if text.startswith(TEXT_TOKEN, i):
                i += len(TEXT_TOKEN)
                continue
            if text.startswith(SPEECH_TOKEN, i):
                i += len(SPEECH_TOKEN)
                continue
            if i + 2 < n and text[i + 1 : i + 3] in ("Hu", "Pi", "St"):
                close = text.find("]", i + 3)
                j = n if close < 0 else close + 1
                push(text[i:j], "speech")
                i = j
                continue
            push("[", "text")
            i += 1
            continue
        nxt = text.find("[", i)
        j = n if nxt < 0 else nxt
        push(text[i:j], "text")
        i = j
    if buf and kind is not None:
        runs.append(("".join(buf), kind))
    return runs


def starts_with_speech(text: str | None) -> bool:
    """True when ``text`` begins with a ``[Hu…]``/``[Pi…]``/``[St…]`` token (reference scan rules)."""
    if text is None or len(text) <= 4 or text[0] != "[":
        return False
    for end in range(1, min(len(text), 11)):
        if text[end] == "]" and end >= 4:
            return text[1:3] in ("Hu", "Pi", "St")
    return False


def ends_with_speech(text: str | None) -> bool:
    """True when ``text`` ends with a speech token (reference scan rules)."""
    if text is None or len(text) <= 4 or text[-1] != "]":
        return False
    n = len(text)
    start = n - 2
    while start >= 0:
        if text[start] == "[" and start + 3 < n:
            return text[start + 1 : start + 3] in ("Hu", "Pi", "St")
        if start < n - 10:
            return False
        start -= 1
    return False


def last_speech_start(prompt: str) -> int | None:
    """Offset where the prompt's last contiguous run of speech tokens begins (None if it has none)."""
    spans = [m.span() for m in _SPEECH_TOKEN_RE.finditer(prompt)]
    if not spans:
        return None
    start = spans[-1][0]
    for prev_span in reversed(spans[:-1]):
        if prev_span[1] != start:
            break
        start = prev_span[0]
    return start
