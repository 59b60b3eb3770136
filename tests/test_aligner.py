"""Forced alignment: pocketsphinx on a real CMU ARCTIC clip, CTC on tiny random and hand-made models."""

from __future__ import annotations

import json
import pickle
import re
import threading
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from models.aligner import (
    AlignedWord,
    Aligner,
    AlignmentError,
    CtcAligner,
    PocketSphinxAligner,
    check_alignment,
    load_aligner,
    transcript_words,
)
from models.errors import CheckpointError
from schemas.errors import SpiritflowError, UsageError

ARCTIC = Path(__file__).parent / "fixtures" / "arctic" / "arctic_a0007.wav"
TRANSCRIPT = "and you always want to see it in the superlative degree"
WORDS = TRANSCRIPT.split()
TOL = 0.05


@pytest.fixture(scope="module")
def arctic() -> np.ndarray:
    wav, sr = sf.read(ARCTIC, dtype="float32")
    assert sr == 16000 and wav.ndim == 1
    return wav


@pytest.fixture(scope="module")
def sphinx() -> PocketSphinxAligner:
    return PocketSphinxAligner()


@pytest.fixture(scope="module")
def sphinx_words(sphinx: PocketSphinxAligner, arctic: np.ndarray) -> list[AlignedWord]:
    return sphinx.align(arctic, TRANSCRIPT)


def _assert_well_formed(words: list[AlignedWord], duration: float) -> None:
    for w in words:
        assert 0.0 <= w.start < w.end <= duration + 0.02, w
    for prev, nxt in pairwise(words):
        assert nxt.start >= prev.end - 1e-9, (prev, nxt)


# --- transcript_words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Don't, Phil.", ["don't", "phil"]),
        ("wait -- what?!", ["wait", "what"]),
        ("'Quoted' words'", ["quoted", "words"]),
        ("Don\u2019t", ["don't"]),
        ("  Two\n\tlines  ", ["two", "lines"]),
        ("... -- !", []),
        ("", []),
        ("Route 66", ["route", "66"]),
    ],
)
def test_transcript_words(text: str, expected: list[str]) -> None:
    assert transcript_words(text) == expected


# --- pocketsphinx ----------------------------------------------------------------------------


def test_pocketsphinx_aligns_every_word_in_order(
    sphinx_words: list[AlignedWord], arctic: np.ndarray
) -> None:
    assert [w.word for w in sphinx_words] == WORDS
    _assert_well_formed(sphinx_words, len(arctic) / 16000)
    assert sphinx_words[0].start == pytest.approx(0.37, abs=TOL)
    assert sphinx_words[-1].end == pytest.approx(3.49, abs=TOL)
    # No pauses between these words: frame ranges are inclusive, so each end is the next start.
    for prev, nxt in pairwise(sphinx_words):
        assert prev.end == pytest.approx(nxt.start, abs=1e-6), (prev, nxt)
    check_alignment(sphinx_words, len(WORDS), len(arctic) / 16000)


def test_pocketsphinx_ignores_case_and_punctuation(
    sphinx: PocketSphinxAligner, arctic: np.ndarray, sphinx_words: list[AlignedWord]
) -> None:
    messy = "And you ALWAYS want to see it, in the superlative degree!"
    assert sphinx.align(arctic, messy) == sphinx_words


def test_pocketsphinx_leaves_out_words_not_in_dictionary(
    sphinx: PocketSphinxAligner, arctic: np.ndarray
) -> None:
    words = sphinx.align(arctic, "and you always zqxjvw want to see it in the superlative degree")
    assert [w.word for w in words] == WORDS
    _assert_well_formed(words, len(arctic) / 16000)
    check_alignment(words, 12, len(arctic) / 16000)


def test_pocketsphinx_no_known_word_fails(sphinx: PocketSphinxAligner, arctic: np.ndarray) -> None:
    with pytest.raises(AlignmentError) as err:
        sphinx.align(arctic, "zqxjvw qqxxz")
    assert err.value.reason == "align_failed"


def test_pocketsphinx_empty_transcript_fails(
    sphinx: PocketSphinxAligner, arctic: np.ndarray
) -> None:
    with pytest.raises(AlignmentError) as err:
        sphinx.align(arctic, " -- ")
    assert err.value.reason == "align_failed"


def test_pocketsphinx_truncated_audio_fails_quietly(
    sphinx: PocketSphinxAligner, arctic: np.ndarray, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AlignmentError) as err:
        sphinx.align(arctic[:8000], TRANSCRIPT)
    assert err.value.reason == "align_failed"
    assert isinstance(err.value, SpiritflowError)
    # The C library's "ERROR: fsg_search.c ..." lines must not reach stderr.
    assert "fsg_search" not in capfd.readouterr().err


def test_pocketsphinx_reuses_decoder_and_is_repeatable(
    arctic: np.ndarray, sphinx_words: list[AlignedWord]
) -> None:
    aligner = PocketSphinxAligner()
    first = aligner.align(arctic, TRANSCRIPT)
    decoder = aligner._decoder
    # A failed alignment in between must not leave state behind.
    with pytest.raises(AlignmentError):
        aligner.align(arctic[:8000], TRANSCRIPT)
    second = aligner.align(arctic, TRANSCRIPT)
    assert aligner._decoder is decoder
    assert first == second == sphinx_words


def test_pocketsphinx_threads_and_pickling(
    sphinx: PocketSphinxAligner, arctic: np.ndarray, sphinx_words: list[AlignedWord]
) -> None:
    results: list[list[AlignedWord]] = []

    def work() -> None:
        results.append(sphinx.align(arctic, TRANSCRIPT))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [sphinx_words] * 3
    copy = pickle.loads(pickle.dumps(sphinx))
    assert copy.fingerprint == sphinx.fingerprint
    assert copy.align(arctic, TRANSCRIPT) == sphinx_words


def test_pocketsphinx_clips_out_of_range_audio(
    sphinx: PocketSphinxAligner, arctic: np.ndarray
) -> None:
    loud = np.clip(arctic * 8.0, -3.0, 3.0)  # would wrap around without clipping
    words = sphinx.align(loud, TRANSCRIPT)
    assert [w.word for w in words] == WORDS


def test_load_aligner_pocketsphinx() -> None:
    aligner = load_aligner("pocketsphinx")
    assert isinstance(aligner, PocketSphinxAligner)
    assert isinstance(aligner, Aligner)
    assert aligner.name == "pocketsphinx"
    assert re.fullmatch(r"pocketsphinx-5\.1\.\d+-en-us", aligner.fingerprint)


# --- check_alignment -------------------------------------------------------------------------


def _good() -> list[AlignedWord]:
    return [AlignedWord("a", 0.1, 0.5), AlignedWord("b", 0.5, 0.9), AlignedWord("c", 1.0, 1.9)]


def test_check_alignment_accepts_good_alignment() -> None:
    check_alignment(_good(), 3, 2.0)
    check_alignment(_good(), 3, 1.885)  # within the 20 ms end tolerance


@pytest.mark.parametrize(
    ("words", "needle"),
    [
        ([AlignedWord("early", -0.1, 0.3)], "'early'"),
        ([AlignedWord("late", 1.5, 2.5)], "'late'"),
        ([AlignedWord("flat", 0.5, 0.5)], "'flat'"),
        ([AlignedWord("back", 0.9, 0.4)], "'back'"),
        ([AlignedWord("one", 0.5, 0.9), AlignedWord("two", 0.2, 0.4)], "'two'"),
        ([AlignedWord("one", 0.5, 0.9), AlignedWord("two", 0.7, 1.2)], "'two'"),
        ([AlignedWord("nan", float("nan"), 0.4)], "'nan'"),
    ],
)
def test_check_alignment_rejects_bad_words(words: list[AlignedWord], needle: str) -> None:
    with pytest.raises(AlignmentError) as err:
        check_alignment(words, len(words), 2.0)
    assert err.value.reason == "bad_alignment"
    assert needle in err.value.message


def test_check_alignment_outside_message_names_times_and_duration() -> None:
    with pytest.raises(AlignmentError) as err:
        check_alignment([AlignedWord("late", 1.5, 2.5)], 1, 2.0)
    assert "1.500" in err.value.message and "2.500" in err.value.message
    assert "2.000" in err.value.message


def test_check_alignment_unaligned_share() -> None:
    two = _good()[:2]
    check_alignment(two, 4, 2.0)  # exactly 50% unaligned passes
    with pytest.raises(AlignmentError) as err:
        check_alignment(two[:1], 3, 2.0)  # 67% unaligned fails
    assert err.value.reason == "bad_alignment"
    assert "67%" in err.value.message
    check_alignment(two[:1], 3, 2.0, max_unaligned=0.7)
    with pytest.raises(AlignmentError):
        check_alignment([], 3, 2.0)


def test_check_alignment_empty_transcript() -> None:
    with pytest.raises(AlignmentError) as err:
        check_alignment([], 0, 2.0)
    assert err.value.reason == "align_failed"
    assert err.value.message == "empty transcript"


# --- CTC -------------------------------------------------------------------------------------

VOCAB = {"<pad>": 0, "|": 1, **{c: i + 2 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}


@pytest.fixture(scope="module")
def tiny_ctc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    folder = tmp_path_factory.mktemp("tiny-ctc")
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(VOCAB))
    return folder


def test_ctc_aligns_arctic(tiny_ctc_dir: Path, arctic: np.ndarray) -> None:
    aligner = load_aligner(f"ctc:{tiny_ctc_dir}")
    assert isinstance(aligner, CtcAligner)
    assert aligner.name == "ctc"
    assert re.fullmatch(r"ctc:[0-9a-f]{16}", aligner.fingerprint)
    words = aligner.align(arctic, "And you always want to see it, in the superlative degree!")
    assert [w.word for w in words] == WORDS
    duration = len(arctic) / 16000
    _assert_well_formed(words, duration)
    # Frames are 80 samples (5 ms) here: a hard-coded 20 ms frame would run far past the end.
    assert words[-1].end <= duration
    check_alignment(words, len(WORDS), duration)
    assert aligner.align(arctic, TRANSCRIPT) == words
    assert load_aligner(f"ctc:{tiny_ctc_dir}").fingerprint == aligner.fingerprint


def test_ctc_leaves_out_words_without_known_characters(
    tiny_ctc_dir: Path, arctic: np.ndarray
) -> None:
    aligner = CtcAligner.from_dir(tiny_ctc_dir)
    words = aligner.align(arctic, "and 1984 you")
    assert [w.word for w in words] == ["and", "you"]
    with pytest.raises(AlignmentError) as err:
        aligner.align(arctic, "1984 2001")
    assert err.value.reason == "align_failed"


def test_ctc_too_short_audio_fails(tiny_ctc_dir: Path, arctic: np.ndarray) -> None:
    aligner = CtcAligner.from_dir(tiny_ctc_dir)
    for n_samples in (800, 10):  # fewer frames than targets; shorter than one frame
        with pytest.raises(AlignmentError) as err:
            aligner.align(arctic[:n_samples], TRANSCRIPT)
        assert err.value.reason == "align_failed"


@pytest.mark.parametrize("missing", ["config.json", "vocab.json", "model.safetensors"])
def test_ctc_missing_file(tiny_ctc_dir: Path, tmp_path: Path, missing: str) -> None:
    for f in tiny_ctc_dir.iterdir():
        if f.name != missing:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(CheckpointError, match=re.escape(missing)):
        load_aligner(f"ctc:{tmp_path}")


def test_ctc_vocab_larger_than_model(tiny_ctc_dir: Path, tmp_path: Path) -> None:
    for f in tiny_ctc_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "vocab.json").write_text(json.dumps({**VOCAB, "é": 99}))
    with pytest.raises(CheckpointError, match="99"):
        CtcAligner.from_dir(tmp_path)


class _ScriptedCtc(nn.Module):
    """Emits a fixed frame-by-frame token path, one frame per 320 samples (like wav2vec2)."""

    def __init__(self, path: list[int], n_tokens: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(conv_kernel=(320,), conv_stride=(320,))
        logits = torch.full((1, len(path), n_tokens), -10.0)
        logits[0, torch.arange(len(path)), torch.tensor(path)] = 10.0
        self.register_buffer("logits", logits)

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        assert x.shape == (1, self.logits.shape[1] * 320)
        return SimpleNamespace(logits=self.logits)


def test_ctc_word_times_follow_the_emission_path() -> None:
    vocab = {"<pad>": 0, "|": 1, "a": 2, "b": 3}
    # 50 frames of 20 ms: "ab" on frames 10-19, "|" on 20-24, "ba" on 25-34 (repeat frames merge).
    path = [0] * 10 + [2] * 5 + [3] * 5 + [1] * 5 + [3] * 5 + [2] * 5 + [0] * 15
    aligner = CtcAligner(_ScriptedCtc(path, 4), vocab, 0, "ctc:test", normalize=False)
    words = aligner.align(np.zeros(50 * 320, dtype=np.float32), "AB, x ba.")
    assert [w.word for w in words] == ["ab", "ba"]
    assert [(w.start, w.end) for w in words] == [
        pytest.approx((0.2, 0.4)),
        pytest.approx((0.5, 0.7)),
    ]


def test_ctc_without_delimiter_in_vocab() -> None:
    vocab = {"<pad>": 0, "a": 1, "b": 2}
    path = [0] * 5 + [1] * 5 + [0] * 5 + [2] * 5 + [0] * 5
    aligner = CtcAligner(_ScriptedCtc(path, 3), vocab, 0, "ctc:test", normalize=False)
    words = aligner.align(np.zeros(25 * 320, dtype=np.float32), "a b")
    assert [(w.word, w.start, w.end) for w in words] == [
        ("a", pytest.approx(0.1), pytest.approx(0.2)),
        ("b", pytest.approx(0.3), pytest.approx(0.4)),
    ]


# --- load_aligner ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["bogus", "ctc:", "CTC:/x", ""])
def test_load_aligner_rejects_unknown_spec(spec: str) -> None:
    with pytest.raises(UsageError) as err:
        load_aligner(spec)
    assert repr(spec) in str(err.value)
    assert "pocketsphinx" in str(err.value) and "ctc:DIR" in str(err.value)


def test_fingerprint_without_loading_equals_the_loaded_aligners(tiny_ctc_dir: Path) -> None:
    from models.aligner import aligner_fingerprint

    for spec in ("pocketsphinx", f"ctc:{tiny_ctc_dir}"):
        assert aligner_fingerprint(spec) == load_aligner(spec).fingerprint
    with pytest.raises(CheckpointError, match="config.json"):
        aligner_fingerprint(f"ctc:{tiny_ctc_dir}-missing")
