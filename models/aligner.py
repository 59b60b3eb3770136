"""Word-level forced alignment of a known transcript to 16 kHz mono audio, behind one interface.

Two backends: pocketsphinx (bundled en-us acoustic model and dictionary, CPU, no checkpoint to
supply) and a user-supplied MMS-style CTC checkpoint (transformers ``Wav2Vec2ForCTC`` plus a
character ``vocab.json``) aligned with torchaudio's CTC forced aligner. Both return one
``AlignedWord`` per transcript word they could place; words they cannot place (not in the
dictionary, no known characters) are left out and count as unaligned in ``check_alignment``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torchaudio.functional as taf

# Imported eagerly: transformers' lazy imports are not safe when first triggered from worker threads.
from transformers import Wav2Vec2ForCTC

from models.checkpoints import fingerprint as file_sha256
from models.checkpoints import require, weights_file
from models.errors import CheckpointError
from schemas.errors import SpiritflowError, UsageError

SAMPLE_RATE = 16000
# Slack on "ends after the audio": frame-based aligners round the last frame up.
END_TOLERANCE_S = 0.02
# Float slack when comparing one word's end with the next word's start.
ORDER_EPS_S = 1e-6
NORM_EPS = 1e-7
# pocketsphinx marks pronunciation variants as "and(2)"; the word is what precedes the mark.
_VARIANT = re.compile(r"\(\d+\)$")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class AlignedWord:
    word: str
    start: float
    end: float


class AlignmentError(SpiritflowError):
    """One recording could not be aligned; ``reason`` is the rejects-table reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@runtime_checkable
class Aligner(Protocol):
    name: str
    fingerprint: str

    def align(self, wav: np.ndarray, transcript: str) -> list[AlignedWord]: ...


def _clean_word(token: str) -> str:
    """Keep letters, digits and apostrophes; apostrophes only inside the word ("don't", not "'em'")."""
    kept = "".join(ch for ch in token.translate(_APOSTROPHES) if ch.isalnum() or ch == "'")
    return kept.strip("'")


def transcript_words(text: str) -> list[str]:
    """The words an aligner is asked to place: lowercase, punctuation gone, split on whitespace.

    Every backend and ``check_alignment``'s word count use this, so they agree on what a word is.
    """
    return [w for w in (_clean_word(t) for t in text.lower().split()) if w]


def _as_mono(wav: np.ndarray) -> np.ndarray:
    """float32 1-D view of the input; anything else is a caller bug, not a bad recording."""
    arr = np.asarray(wav, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"expected 1-D mono audio, got shape {arr.shape}")
    return arr


def _to_pcm16(wav: np.ndarray) -> bytes:
    """pocketsphinx reads 16-bit PCM; clip first so out-of-range floats do not wrap around."""
    clipped = np.clip(np.nan_to_num(_as_mono(wav)), -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


class PocketSphinxAligner:
    """pocketsphinx's FSG forced alignment with the bundled en-us model (no checkpoint needed)."""

    def __init__(self) -> None:
        self.name = "pocketsphinx"
        self.fingerprint = _pocketsphinx_fingerprint()
        self._lock = threading.Lock()
        self._decoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Decoders and locks do not pickle; each copy (e.g. on a Dask worker) makes its own.
        return {"name": self.name, "fingerprint": self.fingerprint}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._decoder = None

    def _get_decoder(self) -> Any:
        """Created once (~0.3 s) on first use; callers hold ``self._lock``."""
        if self._decoder is None:
            from pocketsphinx import Decoder

            # FATAL: otherwise a failed alignment prints "ERROR: fsg_search.c ..." to stderr.
            self._decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL")
        return self._decoder

    def align(self, wav: np.ndarray, transcript: str) -> list[AlignedWord]:
        pcm = _to_pcm16(wav)
        words = transcript_words(transcript)
        if not words:
            raise AlignmentError("align_failed", "empty transcript")
        with self._lock:
            decoder = self._get_decoder()
            known = [w for w in words if decoder.lookup_word(w) is not None]
            if not known:
                raise AlignmentError(
                    "align_failed",
                    f"no transcript word is in the pronunciation dictionary: {words[:5]}",
                )
            segments = self._decode(decoder, pcm, known)
            frame_rate = float(decoder.config["frate"])
        return _match_segments(segments, known, frame_rate)

    @staticmethod
    def _decode(decoder: Any, pcm: bytes, known: list[str]) -> list[tuple[str, int, int]]:
        """(token, first frame, last frame) for the best path, or align_failed when there is none."""
        # Feature and noise statistics otherwise carry over from the previous utterance, making a
        # recording's word times depend on what this decoder aligned before it.
        decoder.reinit_feat()
        try:
            decoder.set_align_text(" ".join(known))
        except RuntimeError as exc:
            raise AlignmentError("align_failed", f"pocketsphinx rejected the text: {exc}") from exc
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        if decoder.hyp() is None:
            raise AlignmentError(
                "align_failed",
                f"no alignment path for {len(known)} words in {len(pcm) / 2 / SAMPLE_RATE:.2f} s of audio",
            )
        return [(seg.word, seg.start_frame, seg.end_frame) for seg in decoder.seg()]


def _match_segments(
    segments: list[tuple[str, int, int]], known: list[str], frame_rate: float
) -> list[AlignedWord]:
    """Pair decoder tokens with the words sent, in order; silences and fillers are skipped."""
    out: list[AlignedWord] = []
    for token, first, last in segments:
        if len(out) == len(known):
            break
        if _VARIANT.sub("", token) == known[len(out)]:
            out.append(AlignedWord(known[len(out)], first / frame_rate, (last + 1) / frame_rate))
    return out


def _read_vocab(path: Path) -> dict[str, int]:
    """Flat ``{token: id}`` map; a per-language (nested) MMS vocab needs a language picked first."""
    try:
        vocab = json.loads(require(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable vocab ({type(exc).__name__}: {exc})") from exc
    if not isinstance(vocab, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in vocab.items()
    ):
        raise CheckpointError(f"{path}: expected a flat JSON object of token -> integer id")
    return vocab


def _normalize(wav: np.ndarray) -> np.ndarray:
    """wav2vec2 feature-extractor normalisation (zero mean, unit variance, eps 1e-7)."""
    return (wav - wav.mean()) / np.sqrt(wav.var() + np.float32(NORM_EPS))


def _conv_frames(config: Any, n_samples: int) -> int:
    """Emission frames the conv feature encoder gives for ``n_samples`` (0 when too short)."""
    n = n_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        n = (n - kernel) // stride + 1
        if n <= 0:
            return 0
    return n


def _min_frames(targets: list[int]) -> int:
    """CTC needs one frame per target plus a blank between repeated neighbours."""
    repeats = sum(1 for a, b in pairwise(targets) if a == b)
    return len(targets) + repeats


class CtcAligner:
    """Character CTC forced alignment with a local ``Wav2Vec2ForCTC`` checkpoint (MMS style)."""

    def __init__(
        self,
        model: Any,
        vocab: dict[str, int],
        blank_id: int,
        fingerprint: str,
        *,
        normalize: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.name = "ctc"
        self.fingerprint = fingerprint
        self.device = torch.device(device)
        self.model: Any = model.to(self.device).eval().requires_grad_(False)
        self.vocab = vocab
        self.blank_id = blank_id
        self.delimiter_id: int | None = vocab.get("|")
        self.normalize = normalize

    @classmethod
    def from_dir(cls, path: str | Path, device: str | torch.device = "cpu") -> CtcAligner:
        """Load config, weights and vocab from a local folder; never touches the network."""
        folder = Path(path).expanduser()
        require(folder / "config.json")
        weights = weights_file(folder)
        vocab = _read_vocab(folder / "vocab.json")
        model = _load_model(folder)
        blank_id = _blank_id(model.config, vocab, folder)
        n_out = int(model.config.vocab_size)
        too_big = {k: v for k, v in vocab.items() if not 0 <= v < n_out}
        if too_big:
            raise CheckpointError(
                f"{folder / 'vocab.json'}: ids {sorted(too_big.values())[:5]} outside the model's {n_out} outputs"
            )
        return cls(
            model,
            vocab,
            blank_id,
            _ctc_fingerprint(weights),
            normalize=_do_normalize(folder),
            device=device,
        )

    def _word_ids(self, word: str) -> list[int]:
        """Ids of the word's characters the vocab knows (lowercase first, uppercase vocabs too)."""
        ids = []
        for ch in word:
            for candidate in (ch, ch.upper()):
                if candidate in self.vocab and self.vocab[candidate] != self.blank_id:
                    ids.append(self.vocab[candidate])
                    break
        return ids

    def _targets(self, words: list[str]) -> tuple[list[int], list[tuple[str, int]]]:
        """Flat target ids and, per alignable word, (word, number of its ids), in order."""
        targets: list[int] = []
        plan: list[tuple[str, int]] = []
        for word in words:
            ids = self._word_ids(word)
            if not ids:
                continue
            if plan and self.delimiter_id is not None:
                targets.append(self.delimiter_id)
            targets.extend(ids)
            plan.append((word, len(ids)))
        return targets, plan

    def align(self, wav: np.ndarray, transcript: str) -> list[AlignedWord]:
        audio = _as_mono(wav)
        words = transcript_words(transcript)
        if not words:
            raise AlignmentError("align_failed", "empty transcript")
        targets, plan = self._targets(words)
        if not targets:
            raise AlignmentError(
                "align_failed", f"no transcript word has a character in the vocab: {words[:5]}"
            )
        n_frames = _conv_frames(self.model.config, len(audio))
        if n_frames < _min_frames(targets):
            raise AlignmentError(
                "align_failed",
                f"{len(targets)} CTC targets need at least {_min_frames(targets)} frames, "
                f"{len(audio) / SAMPLE_RATE:.2f} s of audio gives {n_frames}",
            )
        emissions = self._emissions(audio)
        spans = self._token_spans(emissions, targets)
        frame_s = len(audio) / emissions.shape[1] / SAMPLE_RATE
        return self._group(spans, plan, frame_s)

    @torch.inference_mode()
    def _emissions(self, audio: np.ndarray) -> torch.Tensor:
        x = _normalize(audio) if self.normalize else audio
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        logits = self.model(inputs).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def _token_spans(self, emissions: torch.Tensor, targets: list[int]) -> list[Any]:
        target_t = torch.tensor([targets], dtype=torch.int32, device=emissions.device)
        labels, scores = taf.forced_align(emissions, target_t, blank=self.blank_id)
        spans = taf.merge_tokens(labels[0].cpu(), scores[0].exp().cpu(), blank=self.blank_id)
        if len(spans) != len(targets):
            raise AlignmentError(
                "align_failed", f"CTC path has {len(spans)} tokens for {len(targets)} targets"
            )
        return spans

    def _group(
        self, spans: list[Any], plan: list[tuple[str, int]], frame_s: float
    ) -> list[AlignedWord]:
        """Cut the token spans back into words (skipping the delimiter between them)."""
        out: list[AlignedWord] = []
        pos = 0
        for word, n_ids in plan:
            if out and self.delimiter_id is not None:
                pos += 1
            first, last = spans[pos], spans[pos + n_ids - 1]
            out.append(AlignedWord(word, first.start * frame_s, last.end * frame_s))
            pos += n_ids
        return out


def _load_model(folder: Path) -> Any:
    """``Wav2Vec2ForCTC`` from disk only; a checkpoint without a CTC head is refused, not guessed."""
    try:
        loaded: Any = Wav2Vec2ForCTC.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{folder}: cannot load Wav2Vec2ForCTC ({type(exc).__name__}: {exc})"
        ) from exc
    model, info = loaded
    missing = [k for k in info.get("missing_keys", []) if k.startswith("lm_head")]
    if missing:
        raise CheckpointError(
            f"{folder}: checkpoint has no CTC head ({', '.join(missing)} missing)"
        )
    return model


def _blank_id(config: Any, vocab: dict[str, int], folder: Path) -> int:
    """The CTC blank: config ``pad_token_id``, else the vocab's ``<pad>``."""
    if config.pad_token_id is not None:
        return int(config.pad_token_id)
    if "<pad>" in vocab:
        return vocab["<pad>"]
    raise CheckpointError(f"{folder}: no pad_token_id in config.json and no <pad> in vocab.json")


def _do_normalize(folder: Path) -> bool:
    """``do_normalize`` from preprocessor_config.json; the feature extractor's default (True) without it."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return True
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("do_normalize", True))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _pocketsphinx_fingerprint() -> str:
    return f"pocketsphinx-{version('pocketsphinx')}-en-us"


def _ctc_fingerprint(weights: Path) -> str:
    return f"ctc:{file_sha256(weights)[:16]}"


def parse_aligner_spec(spec: str) -> Path | None:
    """``"pocketsphinx"`` (→ None) or ``"ctc:DIR"`` (→ DIR), the CLI's ``--aligner`` values."""
    if spec == "pocketsphinx":
        return None
    if spec.startswith("ctc:") and spec[len("ctc:") :].strip():
        return Path(spec[len("ctc:") :]).expanduser()
    raise UsageError(f"unknown aligner {spec!r}: expected 'pocketsphinx' or 'ctc:DIR'")


def aligner_fingerprint(spec: str) -> str:
    """The cache key part of an aligner, without loading its model (planning stays cheap)."""
    folder = parse_aligner_spec(spec)
    if folder is None:
        return _pocketsphinx_fingerprint()
    require(folder / "config.json")
    return _ctc_fingerprint(weights_file(folder))


def load_aligner(spec: str) -> Aligner:
    """The aligner a ``--aligner`` value names (pocketsphinx needs no files; ctc loads its folder)."""
    folder = parse_aligner_spec(spec)
    return PocketSphinxAligner() if folder is None else CtcAligner.from_dir(folder)


def _bad(message: str) -> AlignmentError:
    return AlignmentError("bad_alignment", message)


def check_alignment(
    words: list[AlignedWord],
    n_transcript_words: int,
    duration_s: float,
    max_unaligned: float = 0.5,
) -> None:
    """Refuse alignments that downstream interleaving would silently get wrong."""
    if n_transcript_words <= 0:
        raise AlignmentError("align_failed", "empty transcript")
    prev: AlignedWord | None = None
    for i, w in enumerate(words):
        span = f"word {i} {w.word!r} at {w.start:.3f}-{w.end:.3f} s"
        if not (w.start >= 0 and w.end <= duration_s + END_TOLERANCE_S):
            raise _bad(f"{span} is outside the audio (duration {duration_s:.3f} s)")
        if not w.end > w.start:
            raise _bad(f"{span} has end <= start")
        if prev is not None and w.start < prev.end - ORDER_EPS_S:
            raise _bad(f"{span} starts before {prev.word!r} ends ({prev.end:.3f} s): out of order")
        prev = w
    if len(words) > n_transcript_words:
        raise _bad(f"{len(words)} aligned words for {n_transcript_words} transcript words")
    unaligned = 1.0 - len(words) / n_transcript_words
    if unaligned > max_unaligned + 1e-9:
        raise _bad(
            f"{unaligned:.0%} of {n_transcript_words} transcript words unaligned "
            f"(limit {max_unaligned:.0%})"
        )
