"""Word timings for a transcript: run an aligner, keep the transcript's own spelling, fill gaps.

The aligner sees normalised words; the corpus shows the transcript's tokens (case, punctuation).
Words the aligner could not place keep their text and get the time between their neighbours
(``schemas.interleave.fill_unaligned``); too many of them make the alignment a reject.
"""

from __future__ import annotations

from models.aligner import AlignedWord, Aligner, check_alignment, transcript_words
from schemas.interleave import fill_unaligned

Word = tuple[str, float, float]


def display_tokens(transcript: str) -> list[tuple[str, str]]:
    """(shown text, normalised word) per transcript word; punctuation-only tokens join a neighbour word."""
    out: list[tuple[str, str]] = []
    leading: list[str] = []  # punctuation before the first word joins the first word
    for token in transcript.split():
        norm = transcript_words(token)
        if norm:
            out.append((" ".join([*leading, token]), norm[0]))
            leading = []
        elif out:
            out[-1] = (f"{out[-1][0]} {token}", out[-1][1])
        else:
            leading.append(token)
    return out


def place_words(
    tokens: list[tuple[str, str]], aligned: list[AlignedWord]
) -> list[tuple[str, float | None, float | None]]:
    """Match aligned words to transcript tokens in order (skipped tokens stay without times)."""
    placed: list[tuple[str, float | None, float | None]] = [
        (shown, None, None) for shown, _ in tokens
    ]
    cursor = 0
    for word in aligned:
        for k in range(cursor, len(tokens)):
            if tokens[k][1] == word.word:
                placed[k] = (tokens[k][0], word.start, word.end)
                cursor = k + 1
                break
    return placed


def align_transcript(
    aligner: Aligner, wav: object, transcript: str, duration_s: float, max_unaligned: float = 0.5
) -> tuple[list[Word], int]:
    """(words with times for every transcript token, how many the aligner left unplaced).

    Raises ``AlignmentError`` (reason ``align_failed`` / ``bad_alignment``) for the rejects table.
    """
    tokens = display_tokens(transcript)
    aligned = aligner.align(wav, transcript)  # type: ignore[arg-type]
    check_alignment(aligned, len(tokens), duration_s, max_unaligned=max_unaligned)
    placed = place_words(tokens, aligned)
    unaligned = sum(1 for _, start, _ in placed if start is None)
    return fill_unaligned(placed, duration_s), unaligned
