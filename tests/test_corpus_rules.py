"""Corpus rules without Prefect: span sampling, frame slicing, unit ids, text tokenizer, samples,
packing, text sources, word placement and the corpus table's Great Expectations checks."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.aligner import AlignedWord
from models.alignment import display_tokens, place_words
from models.corpus import (
    CorpusConfig,
    interleaved_sample,
    pack,
    recording_kind,
    span_histograms,
    speech_sample,
    stats_rows,
    text_rank,
    text_sample,
)
from models.errors import CheckpointError
from models.text_tokenizer import TextTokenizer
from models.tiny import write_llama_sentencepiece
from schemas.errors import ManifestError, TableValidationError
from schemas.expectations import validate_frame
from schemas.interleave import (
    Span,
    SpanRules,
    fill_unaligned,
    frame_range,
    rng_for,
    sample_spans,
)
from schemas.tables import CORPUS
from schemas.tokens import (
    HUBERT_BASE,
    LAST_ID,
    PITCH_BASE,
    SPEECH_ID,
    STYLE_BASE,
    TEXT_ID,
    token_id,
    units_to_ids,
    units_to_string,
)
from storage.parquet import to_arrow
from storage.texts import read_text_source

EPS = 1e-9
PITCH_LAST = STYLE_BASE - 1  # 32566
HUBERT_LAST = PITCH_BASE - 1  # 32502
MARKERS = (TEXT_ID, SPEECH_ID)
TOKEN_RE = re.compile(r"\[[A-Za-z]+\d+\]")
VOCAB = ["The", "time,", "was", "there", "and", "naïve", "café", "you", "said:", "OK."]


# --------------------------------------------------------------------------- helpers / fixtures


@pytest.fixture(scope="module")
def sp_tok(tmp_path_factory: pytest.TempPathFactory) -> TextTokenizer:
    folder = tmp_path_factory.mktemp("llama-sp")
    write_llama_sentencepiece(folder)
    return TextTokenizer.from_dir(folder)


@pytest.fixture(scope="module")
def sp_model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("llama-sp-bytes")
    return write_llama_sentencepiece(folder).read_bytes()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.tiny import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("tiny-ckpt")
    write_tiny_checkpoints(root)
    return root / "spiritlm_model"


def _recording(
    rid: str, dur: float, n_words: int, seed: int = 0, pitch: bool = True
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, float, float]]]:
    rng = np.random.default_rng(seed)
    units: dict[str, Any] = {"hubert": rng.integers(0, 501, int(25 * dur))}
    if pitch:
        units["pitch"] = rng.integers(0, 64, int(12.5 * dur))
        units["style"] = rng.integers(0, 100, math.ceil(dur))
    step = dur / max(n_words, 1)
    words = [
        (VOCAB[(i + seed) % len(VOCAB)], round(i * step + 0.02, 4), round((i + 0.8) * step, 4))
        for i in range(n_words)
    ]
    rec = {"id": rid, "sha256": hashlib.sha256(rid.encode()).hexdigest(), "duration_s": dur}
    return rec, units, words


def _dedup(arr: np.ndarray) -> list[int]:
    return [int(v) for i, v in enumerate(arr) if i == 0 or v != arr[i - 1]]


def _segments(ids: np.ndarray) -> list[tuple[int, list[int]]]:
    """(marker id, content ids) per modality segment of a sample's content (no <s>/</s>)."""
    out: list[tuple[int, list[int]]] = []
    for tid in np.asarray(ids).tolist():
        if tid in MARKERS:
            out.append((tid, []))
        else:
            assert out, "content before the first marker"
            out[-1][1].append(tid)
    return out


def _first_hu(t: float) -> int:
    return math.ceil(t * 25.0 - EPS)


# --------------------------------------------------------------------------- 1. span sampling

RULE_SETS = [
    SpanRules(),
    SpanRules((2, 3), (1, 2)),
    SpanRules((1, 1), (4, 7)),
    SpanRules((3, 3), (3, 3)),
]


def _check_spans(spans: list[Span], n: int, rules: SpanRules) -> None:
    covered = [w for s in spans for w in range(s.start, s.stop)]
    assert covered == list(range(n))  # every word exactly once, in order (contiguous)
    for a, b in pairwise(spans):
        assert a.stop == b.start
        assert a.modality != b.modality
    for i, s in enumerate(spans):
        lo, hi = rules.bounds(s.modality)
        length = s.stop - s.start
        assert 1 <= length <= hi, (s, rules)
        is_last = i == len(spans) - 1
        # the only other short span allowed: the first one cut to leave one word for the second
        first_cut = i == 0 and s.stop == n - 1 and len(spans) == 2
        if not is_last and not first_cut:
            assert length >= lo, (i, s, rules)
    if n >= 2:
        assert spans[0].stop < n
        assert {s.modality for s in spans} == {"text", "speech"}


@pytest.mark.parametrize("rules", RULE_SETS, ids=lambda r: f"t{r.text_words}s{r.speech_words}")
def test_spans_cover_alternate_and_respect_lengths(rules: SpanRules) -> None:
    for n in range(0, 90):
        for seed in range(6):
            spans = sample_spans(n, rng_for(seed, "spans", f"rec{n}"), rules)
            _check_spans(spans, n, rules)


def test_spans_lengths_actually_vary_within_range() -> None:
    rules = SpanRules((2, 5), (3, 4))
    seen: dict[str, set[int]] = {"text": set(), "speech": set()}
    for i in range(200):
        for s in sample_spans(60, rng_for(1, "spans", str(i)), rules)[:-1]:
            seen[s.modality].add(s.stop - s.start)
    assert seen == {"text": {2, 3, 4, 5}, "speech": {3, 4}}


def test_spans_edge_cases() -> None:
    rules = SpanRules()
    assert sample_spans(0, rng_for(0, "x"), rules) == []
    assert sample_spans(-3, rng_for(0, "x"), rules) == []
    firsts = set()
    for i in range(40):
        spans = sample_spans(1, rng_for(0, "one", str(i)), rules)
        assert len(spans) == 1 and (spans[0].start, spans[0].stop) == (0, 1)
        firsts.add(spans[0].modality)
    assert firsts == {"text", "speech"}
    # two words with long minimum spans: one word each, both modalities
    for i in range(20):
        spans = sample_spans(2, rng_for(0, "two", str(i)), rules)
        assert [(s.start, s.stop) for s in spans] == [(0, 1), (1, 2)]


def test_first_modality_varies_across_recordings_and_seeds() -> None:
    rules = SpanRules()
    by_rec = Counter(
        sample_spans(40, rng_for(0, "spans", f"r{i}"), rules)[0].modality for i in range(50)
    )
    assert set(by_rec) == {"text", "speech"}
    assert min(by_rec.values()) >= 8  # a fair coin: P(fewer than 8 of 50) ~ 1e-7
    by_seed = {
        sample_spans(40, rng_for(seed, "spans", "r0"), rules)[0].modality for seed in range(50)
    }
    assert by_seed == {"text", "speech"}


def test_spans_deterministic_per_seed_and_keys() -> None:
    rules = SpanRules((2, 6), (2, 6))
    for i in range(10):
        a = sample_spans(50, rng_for(3, "spans", f"r{i}"), rules)
        b = sample_spans(50, rng_for(3, "spans", f"r{i}"), rules)
        assert a == b
    different = [
        sample_spans(50, rng_for(3, "spans", f"r{i}"), rules)
        != sample_spans(50, rng_for(3, "spans", f"q{i}"), rules)
        for i in range(10)
    ]
    assert sum(different) >= 8
    # keys are not concatenated: ("a", "b") and ("ab",) are different items
    assert rng_for(0, "a", "b").random() != rng_for(0, "ab").random()
    assert rng_for(0, "a").random() != rng_for(1, "a").random()


@pytest.mark.parametrize(
    "text_words, speech_words",
    [
        ((3, 2), (5, 15)),
        ((0, 4), (5, 15)),
        ((10, 30), (0, 0)),
        ((10, 30), (6, 5)),
        ((-1, 2), (1, 1)),
    ],
)
def test_span_rules_reject_bad_ranges(
    text_words: tuple[int, int], speech_words: tuple[int, int]
) -> None:
    with pytest.raises(ValueError, match="1 <= min <= max"):
        SpanRules(text_words, speech_words)


# --------------------------------------------------------------------------- 2. frame_range


def _boundaries(rng: np.random.Generator, total: float, rate: float, min_gap: float) -> list[float]:
    """Sorted span boundaries from 0 to total; some random, some exactly at frame starts."""
    n_frames = round(total * rate)
    raw = list(rng.uniform(0, total, int(rng.integers(0, 15))))
    raw += [int(k) / rate for k in rng.integers(0, n_frames + 1, int(rng.integers(0, 5)))]
    out = [0.0]
    for b in sorted(raw):
        if b - out[-1] >= min_gap and total - b >= min_gap:
            out.append(float(b))
    return [*out, total]


@pytest.mark.parametrize("rate", [25.0, 12.5, 1.0])
def test_frame_range_adjacent_spans_partition_frames(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 8))
    for _ in range(300):
        n_frames = int(rng.integers(1, 200))
        total = n_frames / rate
        bounds = _boundaries(rng, total, rate, min_gap=1.0 / rate)
        frames: list[int] = []
        for a, b in pairwise(bounds):
            f0, f1 = frame_range(a, b, rate, n_frames)
            assert 0 <= f0 < f1 <= n_frames
            # each span holds exactly the frames whose start time lies in [a, b)
            assert all(a - EPS <= k / rate < b + EPS for k in range(f0, f1))
            frames.extend(range(f0, f1))
        assert frames == list(range(n_frames)), bounds  # no overlap, no loss, in order


@pytest.mark.parametrize("rate", [25.0, 12.5, 1.0])
def test_frame_range_short_spans_lose_nothing_and_only_repeat_the_frame_at_t0(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 8) + 1)
    for _ in range(300):
        n_frames = int(rng.integers(1, 60))
        total = n_frames / rate
        bounds = _boundaries(rng, total, rate, min_gap=0.0)
        seen: Counter[int] = Counter()
        for a, b in pairwise(bounds):
            f0, f1 = frame_range(a, b, rate, n_frames)
            assert f1 > f0  # every span gets at least one frame
            if math.ceil(a * rate - EPS) == math.ceil(b * rate - EPS):
                # no frame starts inside: exactly the frame playing at a
                assert (f0, f1) == (min(math.floor(a * rate + EPS), n_frames - 1), f0 + 1)
            else:
                seen.update(range(f0, f1))
        assert sorted(seen) == list(range(n_frames)) and max(seen.values()) == 1


def test_frame_range_short_span_gets_the_frame_playing_at_t0() -> None:
    assert frame_range(2.3, 2.6, 1.0, 10) == (2, 3)
    assert frame_range(2.3, 2.3, 1.0, 10) == (2, 3)
    assert frame_range(0.0, 0.2, 1.0, 10) == (0, 1)
    assert frame_range(0.41, 0.43, 25.0, 100) == (10, 11)
    assert frame_range(0.81, 0.85, 12.5, 100) == (10, 11)


def test_frame_range_clips_to_the_unit_count() -> None:
    assert frame_range(0.0, 100.0, 25.0, 30) == (0, 30)
    assert frame_range(3.5, 9.0, 1.0, 5) == (4, 5)
    assert frame_range(-0.5, 0.5, 25.0, 30) == (0, 13)
    # a span past the last frame still gets one (the last) rather than nothing
    assert frame_range(10.0, 11.0, 1.0, 5) == (4, 5)
    assert frame_range(0.0, 1.0, 25.0, 0) == (0, 0)


def test_frame_range_exact_frame_start_boundaries() -> None:
    assert frame_range(0.4, 0.8, 25.0, 100) == (10, 20)
    assert frame_range(0.1 * 4, 0.1 * 8, 25.0, 100) == (10, 20)
    assert frame_range(1.2 / 3, 0.7 + 0.1, 25.0, 100) == (10, 20)
    assert frame_range(0.08 * 3, 0.08 * 7, 12.5, 100) == (3, 7)
    assert frame_range(3.0, 5.0, 1.0, 10) == (3, 5)


# --------------------------------------------------------------------------- 3. units_to_ids


def _reference_events(
    hubert: np.ndarray,
    pitch: np.ndarray | None,
    style: np.ndarray | None,
    first: tuple[int, int, int] = (0, 0, 0),
) -> list[tuple[float, int, str, int, int]]:
    """(time, tie rank, stream, frame, id) sorted by time, ties St < Pi < Hu; Hu/Pi deduped."""
    events = []
    streams = [("St", style, STYLE_BASE, 1.0, False, 0, first[2])]
    streams.append(("Pi", pitch, PITCH_BASE, 12.5, True, 1, first[1]))
    streams.append(("Hu", hubert, HUBERT_BASE, 24.99, True, 2, first[0]))
    for name, codes, base, rate, dedup, rank, off in streams:
        if codes is None:
            continue
        for i, code in enumerate(np.asarray(codes).tolist()):
            if dedup and i > 0 and code == int(codes[i - 1]):
                continue
            events.append(((i + off) / rate, rank, name, i + off, base + code))
    return sorted(events, key=lambda e: (e[0], e[1]))


def _random_units(
    rng: np.random.Generator, seconds: float, repeats: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = rng.integers(0, 6 if repeats else 501, int(25 * seconds))
    p = rng.integers(0, 3 if repeats else 64, int(12.5 * seconds))
    s = rng.integers(0, 100, math.ceil(seconds))
    if not repeats:
        for arr, n in ((h, 501), (p, 64)):
            for i in range(1, arr.size):
                if arr[i] == arr[i - 1]:
                    arr[i] = (arr[i] + 1) % n
    return h, p, s


@pytest.mark.parametrize("expressive", [True, False])
def test_units_to_ids_match_the_string_and_an_independent_merge(expressive: bool) -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        seconds = float(rng.uniform(0.1, 6.0))
        h, p, s = _random_units(rng, seconds, repeats=bool(trial % 2))
        pitch, style = (p, s) if expressive else (None, None)
        for first in [(0, 0, 0), tuple(int(x) for x in rng.integers(0, 80, 3))]:
            ids = units_to_ids(h, pitch, style, first=first)  # type: ignore[arg-type]
            string = units_to_string(h, pitch, style, first=first)  # type: ignore[arg-type]
            assert ids.dtype == np.int32
            assert ids.tolist() == [token_id(t) for t in TOKEN_RE.findall(string)]
            expected = [e[4] for e in _reference_events(h, pitch, style, first)]  # type: ignore[arg-type]
            assert ids.tolist() == expected
            assert ids.size == 0 or (ids.min() >= HUBERT_BASE and ids.max() <= LAST_ID)
            if not expressive:
                assert ids.size == 0 or ids.max() <= HUBERT_LAST


def test_units_to_ids_dedups_hubert_and_pitch_not_style() -> None:
    ids = units_to_ids([1, 1, 2, 2, 2, 1, 1], [3, 3, 3, 4], [7, 7]).tolist()
    hu = [i - HUBERT_BASE for i in ids if i <= HUBERT_LAST]
    pi = [i - PITCH_BASE for i in ids if PITCH_BASE <= i <= PITCH_LAST]
    st = [i - STYLE_BASE for i in ids if i >= STYLE_BASE]
    assert (hu, pi, st) == ([1, 2, 1], [3, 4], [7, 7])
    assert units_to_string([5, 5, 5]) == "[Hu5]"
    assert units_to_ids([5, 5, 5]).tolist() == [HUBERT_BASE + 5]


def test_units_to_ids_id_ranges_per_stream() -> None:
    ids = units_to_ids([0, 500], [0, 63], [0, 99]).tolist()
    assert sorted(ids) == [32002, 32502, 32503, 32566, 32567, 32666]
    with pytest.raises(ValueError, match="hubert unit 501"):
        units_to_ids([501])
    with pytest.raises(ValueError, match="pitch unit 64"):
        units_to_ids([1], [64], [1])
    with pytest.raises(ValueError, match="style unit -1"):
        units_to_ids([1], [1], [-1])


def test_first_offsets_change_only_the_order() -> None:
    rng = np.random.default_rng(11)
    changed = 0
    for _ in range(20):
        h, p, s = _random_units(rng, 4.0)
        base = units_to_ids(h, p, s)
        for first in [(0, 7, 3), (25, 0, 1), (13, 40, 0)]:
            moved = units_to_ids(h, p, s, first=first)
            assert Counter(moved.tolist()) == Counter(base.tolist())
            changed += moved.tolist() != base.tolist()
    assert changed >= 30  # the offsets are not ignored


def test_sliced_spans_render_like_the_whole_recording() -> None:
    """Cut a recording by time, render each span with its ``first``: each frame lands in one span,
    Hu dedup happens per span, and within a span the order is the whole recording's order."""
    rng = np.random.default_rng(5)
    for trial in range(30):
        seconds = float(rng.integers(3, 12))
        h, p, s = _random_units(rng, seconds, repeats=trial % 2 == 0)
        bounds = _boundaries(rng, seconds, 1.0, min_gap=1.0)  # >= 1 s: every stream partitions
        whole = _reference_events(h, p, s)
        hu_frames: list[int] = []
        hu_tokens: Counter[int] = Counter()
        style_ids: list[int] = []
        for a, b in pairwise(bounds):
            h0, h1 = frame_range(a, b, 25.0, h.size)
            p0, p1 = frame_range(a, b, 12.5, p.size)
            s0, s1 = frame_range(a, b, 1.0, s.size)
            ids = units_to_ids(h[h0:h1], p[p0:p1], s[s0:s1], first=(h0, p0, s0)).tolist()
            hu_frames.extend(range(h0, h1))
            assert [i - HUBERT_BASE for i in ids if i <= HUBERT_LAST] == _dedup(h[h0:h1])
            hu_tokens.update(i for i in ids if i <= HUBERT_LAST)
            style_ids.extend(i for i in ids if i >= STYLE_BASE)
            if trial % 2:  # no repeats: the span is exactly the whole's events of its frames
                ranges = {"Hu": (h0, h1), "Pi": (p0, p1), "St": (s0, s1)}
                mine = [e[4] for e in whole if ranges[e[2]][0] <= e[3] < ranges[e[2]][1]]
                assert ids == mine
        assert hu_frames == list(range(h.size))
        assert sum(hu_tokens.values()) >= len(_dedup(h))  # per-span dedup never drops more
        assert style_ids == (s + STYLE_BASE).tolist()


# --------------------------------------------------------------------------- 4. TextTokenizer


def test_sentencepiece_folder_layout(sp_tok: TextTokenizer) -> None:
    ids = [TEXT_ID, *sp_tok.encode("hello world"), SPEECH_ID, 32002 + 12, 32503 + 5, 32567 + 99]
    assert sp_tok.decode_sample(ids) == "[Text]hello world[Speech][Hu12][Pi5][St99]"
    assert all(0 <= i < 32000 for i in sp_tok.encode("hello world"))
    assert (sp_tok.bos_id, sp_tok.eos_id) == (1, 2)
    assert sp_tok.units_last_id == LAST_ID
    assert sp_tok.fingerprint.startswith("sentencepiece:")


def test_sentencepiece_has_32000_pieces(tmp_path: Path) -> None:
    import sentencepiece as spm

    path = write_llama_sentencepiece(tmp_path)
    assert spm.SentencePieceProcessor(model_file=str(path)).get_piece_size() == 32000


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "Hello, world! (It's 3:45pm; OK?)",
        "naïve café — 日本語",
        "emoji 🎉 and tabs\tand  double  spaces",
        "line\nbreak",
        " leading and trailing ",
    ],
)
def test_sentencepiece_round_trip(sp_tok: TextTokenizer, text: str) -> None:
    ids = sp_tok.encode(text)
    assert all(0 <= i < 32000 for i in ids)
    assert sp_tok.decode_sample(ids) == text
    assert (
        sp_tok.decode_sample([TEXT_ID, *ids, SPEECH_ID, HUBERT_BASE])
        == f"[Text]{text}[Speech][Hu0]"
    )


@pytest.mark.parametrize("change", [-1, +1])
def test_sentencepiece_of_another_size_is_refused(
    tmp_path: Path, sp_model_bytes: bytes, change: int
) -> None:
    from sentencepiece import sentencepiece_model_pb2

    proto: Any = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(sp_model_bytes)
    if change < 0:
        del proto.pieces[-1]
    else:
        proto.pieces.add(piece="<extra>", score=0.0, type=5)
    (tmp_path / "tokenizer.model").write_bytes(proto.SerializeToString())
    with pytest.raises(CheckpointError, match="32000") as err:
        TextTokenizer.from_dir(tmp_path)
    assert str(32000 + change) in str(err.value)


def test_trained_tiny_sentencepiece_is_refused(tmp_path: Path) -> None:
    import io

    import sentencepiece as spm

    sentences = [f"the quick brown fox {i} jumps over the lazy dog number {i}" for i in range(200)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, vocab_size=60, minloglevel=2
    )
    (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="60 pieces.*32000"):
        TextTokenizer.from_dir(tmp_path)


def test_added_tokens_at_wrong_ids_are_refused(tmp_path: Path, sp_model_bytes: bytes) -> None:
    (tmp_path / "tokenizer.model").write_bytes(sp_model_bytes)
    (tmp_path / "added_tokens.json").write_text(json.dumps({"[Text]": 32005}))
    with pytest.raises(CheckpointError, match=r"\[Text\] has id 32005"):
        TextTokenizer.from_dir(tmp_path)
    (tmp_path / "added_tokens.json").unlink()
    config = {"added_tokens_decoder": {"32000": {"content": "[Speech]"}}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"\[Speech\] has id 32000"):
        TextTokenizer.from_dir(tmp_path)


def test_added_tokens_at_released_ids_are_accepted(tmp_path: Path, sp_model_bytes: bytes) -> None:
    (tmp_path / "tokenizer.model").write_bytes(sp_model_bytes)
    base = {"[Text]": 32000, "[Speech]": 32001, **{f"[Hu{i}]": 32002 + i for i in range(501)}}
    (tmp_path / "added_tokens.json").write_text(json.dumps(base))
    assert TextTokenizer.from_dir(tmp_path).units_last_id == 32502
    full = {**base, **{f"[Pi{i}]": 32503 + i for i in range(64)}, "[St99]": 32666}
    (tmp_path / "added_tokens.json").write_text(json.dumps(full))
    assert TextTokenizer.from_dir(tmp_path).units_last_id == 32666


def test_unusable_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no tokenizer.model"):
        TextTokenizer.from_dir(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        TextTokenizer.from_dir(tmp_path / "missing")
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a SentencePiece model"):
        TextTokenizer.from_dir(tmp_path)


def test_tokenizers_file_without_spiritlm_tokens_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "<unk>": 2}, unk_token="<unk>")).save(
        str(tmp_path / "tokenizer.json")
    )
    with pytest.raises(CheckpointError, match=r"no \[Text\]"):
        TextTokenizer.from_dir(tmp_path)


@pytest.mark.parametrize("variant, last", [("base", 32502), ("expressive", 32666)])
def test_tiny_spiritlm_folders_load(tiny_lm: Path, variant: str, last: int) -> None:
    tok = TextTokenizer.from_dir(tiny_lm / f"spirit-lm-{variant}-7b")
    assert tok.units_last_id == last
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    assert tok.fingerprint.startswith("tokenizers:")
    text_ids = tok.encode("hello world")
    assert text_ids and all(0 <= i < 32000 for i in text_ids)
    assert (
        tok.decode_sample([TEXT_ID, *text_ids, SPEECH_ID, 32005])
        == "[Text]hello world[Speech][Hu3]"
    )


def test_our_arithmetic_ids_match_the_checkpoint_tokenizer(tiny_lm: Path) -> None:
    from transformers import AutoTokenizer

    folder = tiny_lm / "spirit-lm-expressive-7b"
    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    string = "[Text]hello[Speech][Hu3][Pi4][St5]"
    theirs = [i for i in hf(string)["input_ids"] if i >= 32000]
    assert theirs == [TEXT_ID, SPEECH_ID, HUBERT_BASE + 3, PITCH_BASE + 4, STYLE_BASE + 5]
    assert theirs == [token_id(t) for t in ("[Text]", "[Speech]", "[Hu3]", "[Pi4]", "[St5]")]
    # every one of the 667 tokens, rendered by our table, gets our id from the checkpoint
    rng = np.random.default_rng(0)
    h, p, s = _random_units(rng, 3.0)
    unit_string = units_to_string(h, p, s)
    got = [i for i in hf("[Speech]" + unit_string)["input_ids"] if i >= 32000]
    assert got == [SPEECH_ID, *units_to_ids(h, p, s).tolist()]
    every = "".join(hf.convert_ids_to_tokens(list(range(32000, 32667))))
    assert [i for i in hf(every)["input_ids"] if i >= 32000] == list(range(32000, 32667))


# --------------------------------------------------------------------------- 5. samples


def _check_interleaved(
    row: dict[str, Any],
    rec: dict[str, Any],
    units: dict[str, Any],
    words: list[tuple[str, float, float]],
    tok: TextTokenizer,
    variant: str,
) -> None:
    ids = np.asarray(row["input_ids"])
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    content = ids[1:-1]
    assert tok.bos_id not in content.tolist() and tok.eos_id not in content.tolist()
    assert tok.decode_sample(content) == row["text"]
    assert row["sample_id"] == f"interleaved:{rec['id']}" and row["kind"] == "interleaved"
    assert (row["recording_id"], row["sha256"]) == (rec["id"], rec["sha256"])
    assert row["duration_s"] == rec["duration_s"] and row["variant"] == variant

    segments = _segments(content)
    spans = row["spans"]
    assert len(segments) == len(spans) == row["n_marker_tokens"]
    assert [m for m, _ in segments] == [
        TEXT_ID if s["modality"] == "text" else SPEECH_ID for s in spans
    ]
    assert all(a[0] != b[0] for a, b in pairwise(segments))
    assert spans[0]["start_word"] == 0 and spans[-1]["stop_word"] == len(words)
    pieces = re.split(r"(\[Text\]|\[Speech\])", row["text"])[1:]
    assert len(pieces) == 2 * len(spans)
    for k, (span, (marker, seg)) in enumerate(zip(spans, segments, strict=True)):
        chosen = words[span["start_word"] : span["stop_word"]]
        assert chosen, span
        assert span["start_s"] == chosen[0][1] and span["end_s"] == chosen[-1][2]
        if marker == TEXT_ID:
            joined = " ".join(w for w, _, _ in chosen)
            assert pieces[2 * k] == "[Text]" and pieces[2 * k + 1] == joined
            assert all(i < 32000 for i in seg) and tok.decode_sample(seg) == joined
        else:
            assert pieces[2 * k] == "[Speech]"
            assert all(HUBERT_BASE <= i <= LAST_ID for i in seg)
            hu = [i - HUBERT_BASE for i in seg if i <= HUBERT_LAST]
            h = np.asarray(units["hubert"])
            frames = h[_first_hu(span["start_s"]) : _first_hu(span["end_s"])]
            assert hu == _dedup(frames)
            if variant == "base":
                assert max(seg) <= HUBERT_LAST
            else:
                assert any(PITCH_BASE <= i <= PITCH_LAST for i in seg)
                st = [i - STYLE_BASE for i in seg if i >= STYLE_BASE]
                s0, s1 = frame_range(span["start_s"], span["end_s"], 1.0, len(units["style"]))
                assert st == np.asarray(units["style"])[s0:s1].tolist()
                # merged in the order of their true times in the recording
                p0, p1 = frame_range(span["start_s"], span["end_s"], 12.5, len(units["pitch"]))
                h0 = _first_hu(span["start_s"])
                h1 = h0 + frames.size
                p = np.asarray(units["pitch"])
                s = np.asarray(units["style"])
                events = _reference_events(h[h0:h1], p[p0:p1], s[s0:s1], first=(h0, p0, s0))
                assert seg == [e[4] for e in events]
    assert row["n_speech_tokens"] == int(np.sum(ids >= HUBERT_BASE))
    assert row["n_text_tokens"] == int(np.sum(ids < 32000)) - 2
    assert row["n_tokens"] == ids.size
    speech = sum(s["end_s"] - s["start_s"] for s in spans if s["modality"] == "speech")
    assert row["speech_seconds"] == pytest.approx(speech)


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_interleaved_samples(sp_tok: TextTokenizer, variant: str) -> None:
    config = CorpusConfig(variant=variant, rules=SpanRules((2, 4), (2, 5)), seed=3)
    for i, (dur, n_words) in enumerate([(6.0, 20), (3.3, 7), (10.0, 40), (1.5, 2), (2.0, 3)]):
        rec, units, words = _recording(f"rec{i}", dur, n_words, seed=i)
        row = interleaved_sample(rec, units, words, sp_tok, config)
        _check_interleaved(row, rec, units, words, sp_tok, variant)


def test_interleaved_with_default_rules_and_short_words(sp_tok: TextTokenizer) -> None:
    config = CorpusConfig(variant="expressive")
    for i in range(6):
        rec, units, words = _recording(f"long{i}", 20.0, 120, seed=i)  # 0.13 s words
        row = interleaved_sample(rec, units, words, sp_tok, config)
        _check_interleaved(row, rec, units, words, sp_tok, "expressive")


def test_expressive_samples_need_pitch_and_style(sp_tok: TextTokenizer) -> None:
    rec, units, words = _recording("nop", 3.0, 8, pitch=False)
    config = CorpusConfig(variant="expressive")
    with pytest.raises(ValueError, match="pitch and style"):
        interleaved_sample(rec, units, words, sp_tok, config)
    with pytest.raises(ValueError, match="pitch and style"):
        speech_sample(rec, units, sp_tok, config)
    with pytest.raises(ValueError, match="pitch and style"):
        speech_sample(rec, {**units, "pitch": [1, 2, 3]}, sp_tok, config)
    base = speech_sample(rec, units, sp_tok, CorpusConfig(variant="base"))
    assert max(base["input_ids"][1:-1]) <= HUBERT_LAST


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_speech_sample(sp_tok: TextTokenizer, variant: str) -> None:
    rec, units, _ = _recording("sp", 4.2, 0, seed=2)
    row = speech_sample(rec, units, sp_tok, CorpusConfig(variant=variant))
    if variant == "base":
        expected = units_to_ids(units["hubert"])
    else:
        expected = units_to_ids(units["hubert"], units["pitch"], units["style"])
    ids = np.asarray(row["input_ids"])
    assert ids.tolist() == [sp_tok.bos_id, SPEECH_ID, *expected.tolist(), sp_tok.eos_id]
    assert sp_tok.decode_sample(ids[1:-1]) == row["text"]
    assert row["text"] == "[Speech]" + units_to_string(
        units["hubert"], *((units["pitch"], units["style"]) if variant == "expressive" else ())
    )
    assert row["sample_id"] == "speech:sp" and row["kind"] == "speech"
    assert row["spans"] == [
        {"modality": "speech", "start_word": 0, "stop_word": 0, "start_s": 0.0, "end_s": 4.2}
    ]
    assert row["speech_seconds"] == 4.2 and row["n_marker_tokens"] == 1
    assert row["n_speech_tokens"] == expected.size and row["n_text_tokens"] == 0


def test_text_sample(sp_tok: TextTokenizer) -> None:
    text = "Hello, naïve world — 3 times."
    row = text_sample("doc7", text, sp_tok, CorpusConfig())
    ids = np.asarray(row["input_ids"])
    assert ids[0] == sp_tok.bos_id and ids[1] == TEXT_ID and ids[-1] == sp_tok.eos_id
    assert ids[2:-1].tolist() == sp_tok.encode(text)
    assert row["text"] == "[Text]" + text == sp_tok.decode_sample(ids[1:-1])
    assert (row["sample_id"], row["kind"], row["text_id"]) == ("text:doc7", "text", "doc7")
    assert row["recording_id"] is None and row["duration_s"] is None
    assert row["spans"] == [] and row["speech_seconds"] == 0.0
    assert (row["n_marker_tokens"], row["n_speech_tokens"]) == (1, 0)
    assert row["n_text_tokens"] == len(sp_tok.encode(text)) == row["n_tokens"] - 3


def test_samples_are_deterministic_and_seeded(sp_tok: TextTokenizer) -> None:
    rules = SpanRules((2, 6), (2, 6))
    recs = [_recording(f"d{i}", 6.0, 24, seed=i) for i in range(6)]

    def build(seed: int) -> list[dict[str, Any]]:
        config = CorpusConfig(rules=rules, seed=seed)
        return [interleaved_sample(r, u, w, sp_tok, config) for r, u, w in recs]

    first, again, other = build(0), build(0), build(1)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a["input_ids"], b["input_ids"])
        assert {k: v for k, v in a.items() if k != "input_ids"} == {
            k: v for k, v in b.items() if k != "input_ids"
        }
    assert any(a["spans"] != c["spans"] for a, c in zip(first, other, strict=True))
    # a recording's sample does not depend on which other recordings are built with it
    alone = interleaved_sample(*recs[3][:2], recs[3][2], sp_tok, CorpusConfig(rules=rules, seed=0))
    assert np.array_equal(alone["input_ids"], first[3]["input_ids"])


def test_recording_kind() -> None:
    assert recording_kind(CorpusConfig(weights=(0, 0, 1)), "r", has_words=False) == "speech"
    only_inter = CorpusConfig(weights=(0, 0, 1))
    only_speech = CorpusConfig(weights=(1, 0, 0))
    assert all(recording_kind(only_inter, f"r{i}", True) == "interleaved" for i in range(200))
    assert all(recording_kind(only_speech, f"r{i}", True) == "speech" for i in range(200))
    half = CorpusConfig(weights=(1, 1, 1))
    kinds = [recording_kind(half, f"r{i}", True) for i in range(400)]
    assert 150 <= kinds.count("interleaved") <= 250  # Binomial(400, .5): 5 sigma
    assert kinds == [recording_kind(half, f"r{i}", True) for i in range(400)]
    quarter = CorpusConfig(weights=(3, 5, 1))  # the text weight does not enter the share
    share = [recording_kind(quarter, f"r{i}", True) for i in range(400)].count("interleaved")
    assert 60 <= share <= 140  # Binomial(400, .25)


def test_corpus_config() -> None:
    assert CorpusConfig(weights=(1, 1, 1)).text_samples_wanted(100) == 50
    assert CorpusConfig(weights=(1, 2, 1)).text_samples_wanted(10) == 10
    assert CorpusConfig(weights=(1, 0, 1)).text_samples_wanted(10) == 0
    assert CorpusConfig(weights=(0, 1, 0)).text_samples_wanted(10) is None
    assert CorpusConfig(weights=(1, 0, 3)).interleaved_share() == 0.75
    for bad in [
        {"variant": "large"},
        {"weights": (0, 0, 0)},
        {"weights": (1, -1, 1)},
        {"weights": (1, 1)},
    ]:
        with pytest.raises(ValueError):
            CorpusConfig(**bad)  # type: ignore[arg-type]


def test_text_rank_is_stable_and_seeded() -> None:
    config = CorpusConfig()
    ranks = [text_rank(config, f"t{i}") for i in range(100)]
    assert ranks == [text_rank(config, f"t{i}") for i in range(100)]
    assert all(0.0 <= r < 1.0 for r in ranks) and len(set(ranks)) == 100
    assert ranks != [text_rank(CorpusConfig(seed=1), f"t{i}") for i in range(100)]


def test_span_histograms_and_stats(sp_tok: TextTokenizer) -> None:
    config = CorpusConfig(rules=SpanRules((2, 4), (2, 5)))
    rec, units, words = _recording("h", 6.0, 20, seed=1)
    inter = interleaved_sample(rec, units, words, sp_tok, config)
    speech = speech_sample(*_recording("s", 2.0, 0)[:2], sp_tok, config)
    text = text_sample("t", "the time was there", sp_tok, config)
    hist = span_histograms([inter["spans"], speech["spans"], text["spans"]])
    for modality in ("text", "speech"):
        lengths = Counter(
            s["stop_word"] - s["start_word"] for s in inter["spans"] if s["modality"] == modality
        )
        assert hist[modality] == [lengths.get(k, 0) for k in range(max(lengths) + 1)]
    frame = pd.DataFrame([inter, speech, text])
    rows = {r["kind"]: r for r in stats_rows(frame, "expressive")}
    assert rows["all"]["samples"] == 3 and rows["text"]["speech_tokens_per_s"] is None
    assert rows["all"]["tokens"] == inter["n_tokens"] + speech["n_tokens"] + text["n_tokens"]
    seconds = inter["speech_seconds"] + 2.0
    tokens = inter["n_speech_tokens"] + speech["n_speech_tokens"]
    assert rows["all"]["speech_tokens_per_s"] == pytest.approx(tokens / seconds)
    assert rows["speech"]["speech_span_words"] == []  # speech-only samples have no word spans


# --------------------------------------------------------------------------- 6. pack


def _unpack(seqs: list[dict[str, Any]]) -> dict[str, list[tuple[int, list[int]]]]:
    pieces: dict[str, list[tuple[int, list[int]]]] = {}
    for seq in seqs:
        ids = np.asarray(seq["input_ids"]).tolist()
        starts = [*seq["doc_starts"], len(ids)]
        assert starts[0] == 0 and starts == sorted(starts)
        for k, (name, offset) in enumerate(
            zip(seq["sample_ids"], seq["sample_offsets"], strict=True)
        ):
            pieces.setdefault(name, []).append((offset, ids[starts[k] : starts[k + 1]]))
    return pieces


@pytest.mark.parametrize("seq_len", [2, 7, 16, 64])
def test_pack_reconstructs_every_sample(seq_len: int) -> None:
    rng = np.random.default_rng(seq_len)
    samples = [
        (f"s{i}", rng.integers(0, 32667, int(rng.integers(1, 50))).astype(np.int32))
        for i in range(40)
    ]
    seqs = list(pack(iter(samples), seq_len))
    assert [s["seq_index"] for s in seqs] == list(range(len(seqs)))
    assert all(len(s["input_ids"]) == seq_len for s in seqs[:-1])
    assert 0 < len(seqs[-1]["input_ids"]) <= seq_len
    assert all(s["input_ids"].dtype == np.int32 for s in seqs)
    total = sum(len(ids) for _, ids in samples)
    assert sum(len(s["input_ids"]) for s in seqs) == total
    assert len(seqs) == math.ceil(total / seq_len)
    pieces = _unpack(seqs)
    assert list(pieces) == [name for name, _ in samples]  # in order
    for name, ids in samples:
        got = pieces[name]
        offsets = [o for o, _ in got]
        assert offsets[0] == 0 and offsets == sorted(set(offsets))
        pos = 0
        for offset, part in got:
            assert offset == pos and part
            pos += len(part)
        assert [i for _, part in got for i in part] == ids.tolist()
    # flattening all sequences gives the samples back to back
    flat = np.concatenate([s["input_ids"] for s in seqs])
    assert np.array_equal(flat, np.concatenate([ids for _, ids in samples]))


def test_pack_long_sample_spans_several_sequences() -> None:
    ids = np.arange(100, dtype=np.int32)
    seqs = list(pack([("short", np.array([7, 8, 9], dtype=np.int32)), ("long", ids)], 10))
    assert len(seqs) == 11
    assert seqs[0]["sample_ids"] == ["short", "long"] and seqs[0]["doc_starts"] == [0, 3]
    assert seqs[0]["sample_offsets"] == [0, 0]
    long_offsets = [s["sample_offsets"][-1] for s in seqs[1:]]
    assert long_offsets == [7 + 10 * k for k in range(10)]
    assert seqs[-1]["input_ids"].tolist() == list(range(97, 100))
    assert seqs[-1]["doc_starts"] == [0]


def test_pack_exact_fit_and_bad_seq_len() -> None:
    seqs = list(pack([("a", np.arange(4)), ("b", np.arange(4))], 4))
    assert [s["sample_ids"] for s in seqs] == [["a"], ["b"]]
    assert list(pack([], 8)) == []
    for bad in (1, 0, -5):
        with pytest.raises(ValueError, match="at least 2"):
            list(pack([("a", np.arange(4))], bad))


# --------------------------------------------------------------------------- 7. text sources


def test_jsonl_text_source(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "first document"}),
        "{not json",
        json.dumps({"id": "b", "body": "no text column"}),
        "",
        json.dumps({"text": "   "}),
        json.dumps({"id": "c", "text": "a forged [Speech] switch"}),
        json.dumps({"text": "no id here, naïve"}),
        json.dumps({"id": "d", "text": 12}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "e", "text": "has [Hu12] inside"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    docs, rejects = read_text_source(str(path))
    assert [(d.id, d.text, d.source_row) for d in docs] == [
        ("a", "first document", 1),
        ("texts:7", "no id here, naïve", 7),
    ]
    assert [r.source_row for r in rejects] == [2, 3, 5, 6, 8, 9, 10]
    for r in rejects:
        assert r.reason == "bad_text"
        assert f"{path} row {r.source_row}:" in r.error
        assert r.uri == f"{path}#{r.source_row}"
    by_row = {r.source_row: r for r in rejects}
    assert "invalid JSON" in by_row[2].error
    assert "'text' is missing" in by_row[3].error and by_row[3].id == "b"
    assert "empty" in by_row[5].error and by_row[5].id == "texts:5"
    assert "[Speech]" in by_row[6].error and by_row[6].id == "c"
    assert "[Hu12]" in by_row[10].error


def test_numeric_zero_id_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"doc {i}"}) + "\n" for i in (0, 1)))
    docs, _ = read_text_source(str(path))
    assert [d.id for d in docs] == ["0", "1"]
    path.write_text("".join(json.dumps({"id": 0, "text": f"doc {i}"}) + "\n" for i in (0, 1)))
    with pytest.raises(ManifestError, match="'0' appears in rows 1 and 2"):
        read_text_source(str(path))


def test_duplicate_ids_stop_the_build(tmp_path: Path) -> None:
    path = tmp_path / "dups.jsonl"
    rows = [{"id": "x", "text": "one"}, {"id": "y", "text": "two"}, {"id": "x", "text": "three"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ManifestError, match=r"'x' appears in rows 1 and 3"):
        read_text_source(str(path))
    # an explicit id equal to another row's default id is a duplicate too
    path.write_text(
        json.dumps({"text": "one"}) + "\n" + json.dumps({"id": "dups:1", "text": "b"}) + "\n"
    )
    with pytest.raises(ManifestError, match="rows 1 and 2"):
        read_text_source(str(path))


def test_plain_text_source(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("first line\n\n   \nsecond, with [brackets]\r\nthird [Text] forged\nlast")
    docs, rejects = read_text_source(str(path))
    assert [(d.id, d.text, d.source_row) for d in docs] == [
        ("notes:1", "first line", 1),
        ("notes:4", "second, with [brackets]", 4),
        ("notes:6", "last", 6),
    ]
    assert [(r.source_row, r.reason, r.id) for r in rejects] == [(5, "bad_text", "notes:5")]
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_text_source(str(bad))


def test_parquet_and_csv_text_sources(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    table = pa.table({"id": ["p1", None, "p3"], "text": ["alpha", "beta", None]})
    pq.write_table(table, path)
    docs, rejects = read_text_source(str(path))
    assert [(d.id, d.text, d.source_row) for d in docs] == [
        ("p1", "alpha", 1),
        ("docs:2", "beta", 2),
    ]
    assert [(r.source_row, r.id) for r in rejects] == [(3, "p3")]
    csv_path = tmp_path / "docs.csv"
    csv_path.write_text('id,text\nc1,"hello, world"\nc2,\n')
    docs, rejects = read_text_source(str(csv_path))
    assert [(d.id, d.text) for d in docs] == [("c1", "hello, world")]
    assert [r.id for r in rejects] == ["c2"]


def test_missing_text_source(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        read_text_source(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ManifestError, match="not found"):
        read_text_source(str(tmp_path / "nope.txt"))


# --------------------------------------------------------------------------- 8. word placement


def test_display_tokens_keep_spelling_and_join_punctuation() -> None:
    transcript = 'Hello, World -- it\'s  OK . "Quoted" ...'
    tokens = display_tokens(transcript)
    assert tokens == [
        ("Hello,", "hello"),
        ("World --", "world"),
        ("it's", "it's"),
        ("OK .", "ok"),
        ('"Quoted" ...', "quoted"),
    ]
    assert " ".join(shown for shown, _ in tokens) == " ".join(transcript.split())


def test_display_tokens_keep_leading_punctuation() -> None:
    transcript = '-- " Yes, sir'
    tokens = display_tokens(transcript)
    assert tokens == [('-- " Yes,', "yes"), ("sir", "sir")]
    assert display_tokens("-- ...") == []  # no word at all: nothing to align or show


def test_place_words_leaves_a_missing_word_without_times_and_fill_gives_the_gap() -> None:
    tokens = display_tokens("The cat, the DOG sat.")
    aligned = [
        AlignedWord("the", 0.1, 0.3),
        AlignedWord("the", 0.9, 1.0),  # "cat" was not placed
        AlignedWord("dog", 1.1, 1.4),
        AlignedWord("sat", 1.5, 1.9),
    ]
    placed = place_words(tokens, aligned)
    assert placed == [
        ("The", 0.1, 0.3),
        ("cat,", None, None),
        ("the", 0.9, 1.0),
        ("DOG", 1.1, 1.4),
        ("sat.", 1.5, 1.9),
    ]
    filled = fill_unaligned(placed, duration_s=2.5)
    assert filled[1] == ("cat,", 0.3, 0.9)
    assert [w for w, _, _ in filled] == ["The", "cat,", "the", "DOG", "sat."]
    assert filled[0] == placed[0] and filled[2:] == placed[2:]


def test_fill_unaligned_edges_and_runs() -> None:
    words: list[tuple[str, float | None, float | None]] = [
        ("a", None, None),
        ("b", 0.5, 0.8),
        ("c", None, None),
        ("d", None, None),
        ("e", 1.6, 2.0),
        ("f", None, None),
    ]
    assert fill_unaligned(words, 3.0) == [
        ("a", 0.0, 0.5),
        ("b", 0.5, 0.8),
        ("c", 0.8, 1.6),
        ("d", 0.8, 1.6),
        ("e", 1.6, 2.0),
        ("f", 2.0, 3.0),
    ]
    assert fill_unaligned([("x", None, None)], 1.25) == [("x", 0.0, 1.25)]
    # neighbours that touch give a zero-length (never negative) gap
    touching = fill_unaligned([("a", 0.0, 1.0), ("b", None, None), ("c", 0.9, 1.2)], 2.0)
    assert touching[1] == ("b", 1.0, 1.0)


def test_place_words_ignores_words_not_in_the_transcript() -> None:
    tokens = display_tokens("one two three")
    placed = place_words(tokens, [AlignedWord("zero", 0.0, 0.1), AlignedWord("three", 1.0, 1.2)])
    assert placed == [("one", None, None), ("two", None, None), ("three", 1.0, 1.2)]


# --------------------------------------------------------------------------- 9. GE on CORPUS


@pytest.fixture(scope="module")
def corpus_rows(sp_tok: TextTokenizer) -> list[dict[str, Any]]:
    config = CorpusConfig(rules=SpanRules((2, 4), (2, 4)))
    rec, units, words = _recording("g1", 5.0, 14, seed=4)
    rows = [
        interleaved_sample(rec, units, words, sp_tok, config),
        speech_sample(rec, units, sp_tok, config),
        text_sample("doc1", "the time was there", sp_tok, config),
        speech_sample(*_recording("g2", 2.0, 0, seed=5)[:2], sp_tok, CorpusConfig(variant="base")),
    ]
    return [{**r, "build_key": "k"} for r in rows]


def _validate(rows: list[dict[str, Any]]) -> int:
    return validate_frame(to_arrow(rows, CORPUS).to_pandas(), CORPUS)


def _fails_on(rows: list[dict[str, Any]], column: str) -> TableValidationError:
    with pytest.raises(TableValidationError) as err:
        _validate(rows)
    assert len(err.value.failures) == 1, err.value.failures
    assert f"column {column!r}" in str(err.value)
    return err.value


def test_valid_corpus_rows_pass(corpus_rows: list[dict[str, Any]]) -> None:
    assert _validate(corpus_rows) == len(corpus_rows)


def _modified(rows: list[dict[str, Any]], index: int, **changes: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(rows)
    out[index].update(changes)
    return out


def test_out_of_vocab_id_fails(corpus_rows: list[dict[str, Any]]) -> None:
    ids = np.array(corpus_rows[2]["input_ids"])
    ids[2] = 40000
    err = _fails_on(_modified(corpus_rows, 2, input_ids=ids), "input_ids.out_of_vocab")
    assert "text:doc1" in str(err)


def test_pitch_id_in_a_base_row_fails(corpus_rows: list[dict[str, Any]]) -> None:
    assert corpus_rows[3]["variant"] == "base"
    ids = np.array(corpus_rows[3]["input_ids"])
    ids[3] = PITCH_BASE + 5
    err = _fails_on(_modified(corpus_rows, 3, input_ids=ids), "input_ids.out_of_vocab")
    assert "speech:g2" in str(err)
    # the same id is fine in an expressive row
    ids = np.array(corpus_rows[1]["input_ids"])
    ids[3] = PITCH_BASE + 5
    assert _validate(_modified(corpus_rows, 1, input_ids=ids)) == len(corpus_rows)


def test_repeated_marker_fails(sp_tok: TextTokenizer, corpus_rows: list[dict[str, Any]]) -> None:
    a, b = sp_tok.encode("the time"), sp_tok.encode("was there")
    ids = np.array([1, TEXT_ID, *a, TEXT_ID, *b, 2], dtype=np.int32)
    row = {
        "input_ids": ids,
        "text": "[Text]the time[Text]was there",
        "n_marker_tokens": 2,
        "n_text_tokens": len(a) + len(b),
        "n_tokens": ids.size,
    }
    err = _fails_on(_modified(corpus_rows, 2, **row), "markers_ok")
    assert "text:doc1" in str(err)


def test_content_before_the_first_marker_fails(corpus_rows: list[dict[str, Any]]) -> None:
    ids = np.array(corpus_rows[2]["input_ids"])
    ids[[1, 2]] = ids[[2, 1]]  # <s> text-id [Text] ...
    _fails_on(_modified(corpus_rows, 2, input_ids=ids), "markers_ok")


def test_marker_count_must_agree(corpus_rows: list[dict[str, Any]]) -> None:
    _fails_on(
        _modified(corpus_rows, 0, n_marker_tokens=corpus_rows[0]["n_marker_tokens"] + 1),
        "markers_ok",
    )


def test_sample_without_content_fails(corpus_rows: list[dict[str, Any]]) -> None:
    row = {
        "input_ids": np.array([1, TEXT_ID, 2], dtype=np.int32),
        "text": "[Text]",
        "n_text_tokens": 0,
        "n_tokens": 3,
    }
    _fails_on(_modified(corpus_rows, 2, **row), "content_tokens")


def test_span_past_the_recording_fails(corpus_rows: list[dict[str, Any]]) -> None:
    spans = copy.deepcopy(corpus_rows[0]["spans"])
    speech = [s for s in spans if s["modality"] == "speech"]
    speech[-1]["end_s"] = corpus_rows[0]["duration_s"] + 1.0
    err = _fails_on(_modified(corpus_rows, 0, spans=spans), "spans.overrun_s")
    assert "interleaved:g1" in str(err)
    # within the 50 ms tolerance is accepted
    speech[-1]["end_s"] = corpus_rows[0]["duration_s"] + 0.04
    assert _validate(_modified(corpus_rows, 0, spans=spans)) == len(corpus_rows)


def test_duplicate_sample_id_fails(corpus_rows: list[dict[str, Any]]) -> None:
    rows = [*copy.deepcopy(corpus_rows), copy.deepcopy(corpus_rows[2])]
    _fails_on(rows, "sample_id")
