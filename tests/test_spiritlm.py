"""SpiRit-LM generation: parity with transformers' generate, batched == one at a time, forcing, retries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import REFERENCE_AUDIO

from models.errors import CheckpointError
from models.sampling import SamplingConfig, is_runaway, item_seed, warp
from models.spiritlm import SpiritLM, interleaved_prompt
from schemas.tokens import (
    HUBERT_BASE,
    PITCH_BASE,
    SHORT_SPEECH_RUN,
    build_prompt,
    forbidden_token_ids,
    token_id,
)

PROMPTS = [
    "[Text]I am so happy today",
    "[Speech][St3][Pi7][Hu12][Hu40][Hu7][Text]",
    "[Text]hello there my friend, how are you doing this fine morning[Speech]",
    "[Text]a",
    "[Speech][Hu5][Hu9][Hu33][Hu2][Hu480][Hu11][Hu12]",
]


@pytest.fixture(scope="module")
def lm(tiny_checkpoints: Path) -> SpiritLM:
    return SpiritLM.from_checkpoint_dir(
        tiny_checkpoints / "spiritlm_model" / "spirit-lm-expressive-7b", "cpu"
    )


@pytest.fixture(scope="module")
def base_lm(tiny_checkpoints: Path) -> SpiritLM:
    return SpiritLM.from_checkpoint_dir(
        tiny_checkpoints / "spiritlm_model" / "spirit-lm-base-7b", "cpu"
    )


def test_variant_is_told_by_the_vocabulary(lm: SpiritLM, base_lm: SpiritLM) -> None:
    assert (lm.variant, base_lm.variant) == ("expressive", "base")
    assert lm.encode("[Text]hi")[0] == lm.bos_id  # BOS added, as the reference tokenizer does
    assert lm.encode("[Hu12]")[-1] == token_id("[Hu12]")


@pytest.mark.parametrize("modality", ["TEXT", "SPEECH"])
@pytest.mark.parametrize("variant", ["expressive", "base"])
def test_single_item_equals_transformers_generate(
    lm: SpiritLM, base_lm: SpiritLM, modality: str, variant: str
) -> None:
    """Same seed, same tokens as generate(do_sample, temperature, top_p, top_k, bad_words_ids)."""
    from transformers import GenerationConfig

    model = lm if variant == "expressive" else base_lm
    prompt = PROMPTS[0] if modality == "TEXT" else PROMPTS[2]
    banned = forbidden_token_ids(modality, model.expressive)
    config = SamplingConfig(max_new_tokens=24)
    ours = model.generate_ids([model.encode(prompt)], banned, config, [1234])[0][0]
    torch.manual_seed(1234)
    enc = model.tokenizer(prompt, return_tensors="pt")
    generated = model.model.generate(
        **enc,
        generation_config=GenerationConfig(
            do_sample=True, temperature=0.8, top_p=0.95, top_k=50, max_new_tokens=24, pad_token_id=0
        ),
        bad_words_ids=[[i] for i in banned],
    )
    assert ours == generated[0, enc["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("modality", ["TEXT", "SPEECH", "ARBITRARY"])
def test_batched_equals_one_at_a_time(lm: SpiritLM, modality: Any) -> None:
    config = SamplingConfig(max_new_tokens=40, runaway_repeats=4, runaway_period=2)
    seeds = [item_seed(0, k) for k in range(len(PROMPTS))]
    batched = lm.generate(PROMPTS, modality, config, seeds, max_batch=5)
    in_threes = lm.generate(PROMPTS, modality, config, seeds, max_batch=3)
    alone = [
        lm.generate([p], modality, config, [s], max_batch=1)[0]
        for p, s in zip(PROMPTS, seeds, strict=True)
    ]
    for a, b, c in zip(batched, in_threes, alone, strict=True):
        assert (a.text, a.stop_reason, a.new_tokens) == (c.text, c.stop_reason, c.new_tokens)
        assert (b.text, b.new_tokens) == (c.text, c.new_tokens)
    assert len({g.text for g in batched}) == len(PROMPTS)  # different seeds, different outputs


def test_modality_forcing(lm: SpiritLM) -> None:
    config = SamplingConfig(max_new_tokens=30)
    text = lm.generate(PROMPTS[:2], "TEXT", config, [1, 2])
    speech = lm.generate(PROMPTS[:2], "SPEECH", config, [1, 2])
    for gen in text:
        assert gen.speech == "" and "[Text]" not in gen.text and "[Speech]" not in gen.text
    for gen in speech:
        assert gen.runs and all(kind == "speech" for _, kind in gen.runs)


def test_arbitrary_drops_short_speech_runs(lm: SpiritLM) -> None:
    gens = lm.generate(PROMPTS, "ARBITRARY", SamplingConfig(max_new_tokens=60), list(range(5)))
    for gen in gens:
        for content, kind in gen.runs:
            if kind == "speech":
                assert content.count("[Hu") >= SHORT_SPEECH_RUN


def test_sampling_seed_is_per_item_and_stable() -> None:
    assert item_seed(0, "t2t", "emov", "1") == item_seed(0, "t2t", "emov", "1")
    assert item_seed(0, "t2t", "emov", "1") != item_seed(1, "t2t", "emov", "1")
    assert 0 <= item_seed("x") < 2**63


def test_top_p_and_top_k_follow_transformers_rules() -> None:
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = torch.randn(3, 200, generator=torch.Generator().manual_seed(0))
    config = SamplingConfig(temperature=0.7, top_p=0.9, top_k=20)
    expected = logits.clone()
    for w in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(20), TopPLogitsWarper(0.9)):
        expected = w(None, expected)
    assert torch.equal(warp(logits, config), expected)


class _Repeating:
    """A stand-in causal LM that always prefers one token: the speech loop the runaway stop catches."""

    def __init__(self, vocab: int, favourite: int) -> None:
        self.config = SimpleNamespace(vocab_size=vocab)
        self.favourite = favourite

    def __call__(self, input_ids: torch.Tensor, **_: Any) -> Any:
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.config.vocab_size)
        logits[..., self.favourite] = 50.0
        return SimpleNamespace(logits=logits)


def test_runaway_speech_stops(lm: SpiritLM) -> None:
    fake = SpiritLM(_Repeating(32768, HUBERT_BASE + 5), lm.tokenizer, lm.folder, lm.device)
    config = SamplingConfig(max_new_tokens=300, runaway_repeats=12, runaway_period=8)
    [gen] = fake.generate(["[Speech][Hu1]"], "SPEECH", config, [0])
    assert gen.stop_reason == "runaway" and gen.new_tokens == 12
    [text] = fake.generate(["[Text]x"], "ARBITRARY", SamplingConfig(max_new_tokens=20), [0])
    assert text.stop_reason == "runaway"
    speech = [True] * 24
    assert is_runaway([7, 9] * 12, speech, config)
    assert not is_runaway([7, 9] * 11 + [7, 8], speech, config)
    assert not is_runaway([7] * 24, [False] * 24, config)  # text repeats are left alone


def test_speech_without_hubert_is_retried(lm: SpiritLM, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []

    def fake_ids(prompts: Any, banned: Any, config: Any, seeds: list[int], **_: Any) -> Any:
        calls.append(list(seeds))
        # Pitch only (no Hu), then Hu only (no pitch: the expressive vocoder cannot voice it).
        ids = [[PITCH_BASE + 1], [HUBERT_BASE + 3], [PITCH_BASE + 1, HUBERT_BASE + 3]]
        return [(ids[min(len(calls), 3) - 1], "length") for _ in prompts]

    monkeypatch.setattr(lm, "generate_ids", fake_ids)
    [gen] = lm.generate(["[Speech][Hu1]"], "SPEECH", SamplingConfig(), [10])
    assert calls == [[10], [11], [12]] and gen.attempts == 3 and lm.decodable(gen)
    calls.clear()
    monkeypatch.setattr(
        lm, "generate_ids", lambda p, b, c, s, **_: [([PITCH_BASE], "length")] * len(p)
    )
    [never] = lm.generate(["[Speech][Hu1]"], "SPEECH", SamplingConfig(), [10])
    assert never.attempts == 4 and never.hubert_tokens == 0  # 1 try + 3 retries, then given up


def test_speech_inputs_from_audio(lm: SpiritLM) -> None:
    strings: list[int] = []

    def encode(wav: Any) -> str:
        strings.append(len(wav))
        return "[Hu1][Hu2]"

    wav = REFERENCE_AUDIO / "glide_3s.wav"
    prompt = interleaved_prompt([("text", "Hi"), ("speech", str(wav))], "TEXT", encode)
    assert prompt == build_prompt([("text", "Hi"), ("speech", "[Hu1][Hu2]")], "TEXT")
    assert strings == [52_800]  # 3.3 s, loaded at 16 kHz
    assert interleaved_prompt([("speech", "[Hu3]")], "SPEECH") == "[Speech][Hu3]"
    with pytest.raises(ValueError, match="speech tokenizer"):
        interleaved_prompt([("speech", str(wav))], "TEXT")


def test_bad_checkpoints_fail_naming_the_file(tiny_checkpoints: Path, tmp_path: Path) -> None:
    src = tiny_checkpoints / "spiritlm_model" / "spirit-lm-base-7b"
    with pytest.raises(CheckpointError, match="config.json"):
        SpiritLM.from_checkpoint_dir(tmp_path, "cpu")
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    weights = next(p for p in broken.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=weights.name):
        SpiritLM.from_checkpoint_dir(broken, "cpu")
    other = tmp_path / "not-llama"
    shutil.copytree(src, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="model_type"):
        SpiritLM.from_checkpoint_dir(other, "cpu")


def test_continue_inputs_voices_speech_output(lm: SpiritLM, tiny_checkpoints: Path) -> None:
    from models.speech_tokenizer import SpeechTokenizer

    tok = SpeechTokenizer.from_checkpoint_dir(tiny_checkpoints, "expressive", "cpu")
    wav = REFERENCE_AUDIO / "glide_3s.wav"
    gen = lm.continue_inputs(
        [("text", "Listen:"), ("speech", str(wav))],
        "SPEECH",
        speech_tokenizer=tok,
        config=SamplingConfig(max_new_tokens=40),
        seed=3,
    )
    assert lm.decodable(gen) and gen.wav is not None and gen.wav.size > 0
    again = lm.continue_inputs(
        prompt=lm_prompt(tok, wav),
        output_modality="SPEECH",
        config=SamplingConfig(max_new_tokens=40),
        seed=3,
    )
    assert (
        again.speech == gen.speech and again.wav is None
    )  # same prompt, same seed; no vocoder given


def lm_prompt(tok: Any, wav: Path) -> str:
    return interleaved_prompt(
        [("text", "Listen:"), ("speech", str(wav))], "SPEECH", tok.encode_string
    )
