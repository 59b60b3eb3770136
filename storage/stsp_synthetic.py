"""A small synthetic STSP set in the real layout: eSpeak NG speech of positive, negative and neutral sentences.

Sentiment is in the words and in the voice (happy: high, wide, fast; sad: low, flat, slow;
angry: low, wide, fast; neutral: middle), so a text scorer and an ASR-based scorer both have
something to find. Manifests carry ``emotion`` and ``sentiment`` as the released ones do.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from models.tts import EspeakSynth, Prosody
from storage.stsp import DATASETS

SENTENCES = {
    "positive": [
        "I am so happy today, this is wonderful news!",
        "What a lovely surprise, thank you so much.",
        "We won the game and everyone is cheering.",
        "This is the best day of my whole life.",
        "I love this beautiful sunny morning.",
        "Your kind words made me smile all day.",
    ],
    "negative": [
        "I am so sad, everything went wrong today.",
        "This is terrible, I hate waiting in the rain.",
        "We lost everything in the awful fire.",
        "I feel lonely and miserable tonight.",
        "That was the worst meal I have ever had.",
        "I am angry that nobody told me the truth.",
    ],
    "neutral": [
        "The train leaves the station at nine.",
        "Please put the books on the second shelf.",
        "The meeting is on the third floor.",
        "Water boils at one hundred degrees.",
        "The store opens on Monday morning.",
        "He walked to the corner and turned left.",
    ],
}
# (emotion, prosody) per sentiment, per dataset's label set.
VOICES = {
    "expresso": {
        "positive": ("happy", Prosody(rate=190, pitch=78, pitch_range=90)),
        "negative": ("sad", Prosody(rate=120, pitch=28, pitch_range=15)),
        "neutral": ("default", Prosody(rate=160, pitch=50, pitch_range=50)),
    },
    "emov": {
        "positive": ("amused", Prosody(rate=185, pitch=72, pitch_range=85)),
        "negative": ("angry", Prosody(rate=185, pitch=35, pitch_range=80)),
        "neutral": ("neutral", Prosody(rate=160, pitch=50, pitch_range=45)),
    },
}
RATE = 16_000


def _resample(wav: np.ndarray, rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as taf

    return taf.resample(torch.from_numpy(wav), rate, RATE).numpy()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Rewriting identical bytes would change mtimes, and ingest would see new files."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_synthetic_stsp(root: str | Path, per_class: int = 2, train_per_class: int = 2) -> Path:
    """Write ROOT/manifest/... and ROOT/data/... (test and train splits of all three datasets)."""
    out = Path(root)
    synth = EspeakSynth.shared()
    next_id = 100_000
    for dataset, rel in DATASETS.items():
        family = "emov" if dataset == "emov" else "expresso"
        manifest_dir = out / "manifest" / rel.rsplit("/", 1)[0]
        manifest_dir.mkdir(parents=True, exist_ok=True)
        for split, count in (("test", per_class), ("train", train_per_class)):
            rows = []
            for sentiment, sentences in SENTENCES.items():
                emotion, prosody = VOICES[family][sentiment]
                offset = 0 if split == "test" else per_class
                for k in range(count):
                    text = sentences[(offset + k) % len(sentences)]
                    speaker = f"spk{k % 2}"
                    wav_path = f"{dataset}/{speaker}/{emotion}/{dataset}_{split}_{next_id}.wav"
                    voice = (
                        "en-us" if k % 2 == 0 else "en-us+f2"
                    )  # two speakers: a male and a female variant
                    audio = _resample(synth.speak(text, prosody, voice), synth.sample_rate)
                    buf = io.BytesIO()
                    sf.write(buf, audio, RATE, format="WAV", subtype="PCM_16")
                    _write_if_changed(out / "data" / wav_path, buf.getvalue())
                    rows.append(
                        {
                            "id": next_id,
                            "wav_path": wav_path,
                            "asr": text,
                            "emotion": emotion,
                            "sentiment": sentiment,
                            "split": split,
                            "speaker": speaker,
                        }
                    )
                    next_id += 1
            manifest = out / "manifest" / f"{rel}.{split}.jsonl"
            _write_if_changed(manifest, "".join(json.dumps(r) + "\n" for r in rows).encode())
    (out / "README.txt").write_text(
        "Synthetic STSP set written by `spiritflow stsp-synth` (eSpeak NG voices; not the real STSP data).\n"
        "Layout and manifest fields follow the released stsp_data archive.\n"
    )
    return out
