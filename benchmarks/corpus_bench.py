"""Corpus benchmark: samples and tokens built per second per core (codec + id mapping, no alignment).

Run: ``.venv/bin/python benchmarks/corpus_bench.py [--recordings 1500]`` (writes benchmarks/results/corpus.json).
One process, one thread (a per-core figure), on the same synthetic recordings (1–30 s, expressive
units with realistic repeat rates, a word every ~0.33 s), in one run:
  spiritflow     speech-only + interleaved samples as the corpus tasks build them: units sliced by
                 time, ids by arithmetic (``units_to_ids``), text spans by the SentencePiece tokenizer
  reference_way  the reference's way to get ids: render the unit string (``units_to_string``, equal to
                 the reference's) and tokenize it with the checkpoint's tokenizer (HF ``tokenizers``)
  copy_limit     the machine's limit for producing the same ids: one ``np.concatenate`` of the
                 finished id arrays (a memory copy; no building can be faster)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.corpus import CorpusConfig, interleaved_sample, speech_sample  # noqa: E402
from models.text_tokenizer import TextTokenizer  # noqa: E402
from models.tiny import write_llama_sentencepiece, write_tiny_checkpoints  # noqa: E402
from schemas.interleave import SpanRules  # noqa: E402
from schemas.tokens import units_to_string  # noqa: E402

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "you",
    "always",
    "want",
    "to",
    "see",
    "it",
    "in",
    "the",
    "superlative",
    "degree",
]


def _runs(rng: np.random.Generator, n: int, vocab: int, mean_run: float) -> np.ndarray:
    """Codes in runs of repeats (geometric lengths), like real HuBERT / pitch streams."""
    lengths = rng.geometric(1 / mean_run, size=n)
    codes = rng.integers(0, vocab, size=n)
    return np.repeat(codes, lengths)[:n]


def make_recordings(n: int, seed: int = 0) -> list[tuple[dict, dict, list]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        duration = float(rng.uniform(1, 30))
        units = {
            "hubert": _runs(rng, int(duration * 25), 501, 1.6),
            "pitch": _runs(rng, int(duration * 12.5), 64, 1.8),
            "style": rng.integers(0, 100, size=int(np.ceil(duration))),
        }
        t, words = 0.1, []
        while t + 0.3 < duration:
            words.append((WORDS[int(rng.integers(len(WORDS)))], t, t + 0.28))
            t += 0.33
        rec = {"id": f"r{i:05d}", "sha256": "0" * 64, "duration_s": duration}
        out.append((rec, units, words))
    return out


def time_it(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recordings", type=int, default=1500)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "corpus.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    recordings = make_recordings(args.recordings)
    audio_s = sum(r[0]["duration_s"] for r in recordings)
    with tempfile.TemporaryDirectory() as tmp:
        write_llama_sentencepiece(Path(tmp) / "sp")
        sp_tok = TextTokenizer.from_dir(Path(tmp) / "sp")
        write_tiny_checkpoints(Path(tmp) / "ckpt")
        from tokenizers import Tokenizer

        hf_tok = Tokenizer.from_file(
            str(Path(tmp) / "ckpt/spiritlm_model/spirit-lm-expressive-7b/tokenizer.json")
        )
    config = CorpusConfig("expressive", (1, 0, 1), SpanRules(), seed=0)
    built: list[np.ndarray] = []

    def ours() -> None:
        built.clear()
        for rec, units, words in recordings:
            built.append(speech_sample(rec, units, sp_tok, config)["input_ids"])
            built.append(interleaved_sample(rec, units, words, sp_tok, config)["input_ids"])

    def reference_way() -> None:
        for _, units, _ in recordings:
            text = "[Speech]" + units_to_string(units["hubert"], units["pitch"], units["style"])
            hf_tok.encode(text, add_special_tokens=False)

    def copy_limit() -> None:
        np.concatenate(built)

    t_ours = time_it(ours)
    tokens = int(sum(len(ids) for ids in built))
    speech_only = int(sum(len(ids) for ids in built[0::2]))
    t_ref = time_it(reference_way, repeat=1)
    t_copy = time_it(copy_limit)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, one process, one thread",
        "command": f"python benchmarks/corpus_bench.py --recordings {args.recordings}",
        "recordings": args.recordings,
        "audio_hours": round(audio_s / 3600, 2),
        "spiritflow": {
            "seconds": round(t_ours, 3),
            "samples_per_s": round(2 * args.recordings / t_ours, 1),
            "tokens_per_s_per_core": round(tokens / t_ours),
            "tokens": tokens,
        },
        "reference_way_speech_only": {
            "seconds": round(t_ref, 3),
            "tokens_per_s_per_core": round(speech_only / t_ref),
            "tokens": speech_only,
        },
        "copy_limit": {"seconds": round(t_copy, 4), "tokens_per_s": round(tokens / t_copy)},
        "speedup_vs_reference_way": round((tokens / t_ours) / (speech_only / t_ref), 2),
        "share_of_copy_limit": round((tokens / t_ours) / (tokens / t_copy), 4),
        "target_tokens_per_s_per_core": 1_000_000,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
