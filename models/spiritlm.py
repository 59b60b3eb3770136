"""SpiRit-LM: load a released checkpoint folder and generate from interleaved inputs, many at a time.

Faithful to the reference ``Spiritlm.generate``: the prompt is tokenized with BOS, forced modality
bans single token ids (transformers' ``bad_words_ids``, which never bans EOS), the whole sequence is decoded with
``skip_special_tokens=True`` and the continuation is what follows the prompt's characters, stripped.
What it adds: batches (left padding with a real pad id, attention masks, explicit positions, rows
leaving the batch when they finish), one random generator per item, a runaway-speech stop and
retries when a speech output cannot be voiced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from models.checkpoints import fingerprint, require, weights_file
from models.device import resolve
from models.errors import CheckpointError
from models.sampling import SamplingConfig, is_runaway, next_tokens
from schemas.tokens import (
    HUBERT_BASE,
    HUBERT_UNITS,
    LAST_ID,
    SHORT_SPEECH_RUN,
    TEXT_ID,
    build_prompt,
    forbidden_token_ids,
    parse_generation,
    token_of,
)

Modality = Literal["TEXT", "SPEECH", "ARBITRARY"]
SPEECH_RETRIES = 3  # the reference's STSP script retries a failed speech generation 3 times


@dataclass
class Generation:
    """One item's continuation: the decoded string, its text/speech runs and how it ended."""

    text: str
    runs: list[tuple[str, Literal["text", "speech"]]]
    new_tokens: int
    stop_reason: Literal["eos", "length", "runaway"]
    attempts: int
    seed: int
    wav: np.ndarray | None = field(default=None, repr=False)

    @property
    def speech(self) -> str:
        return "".join(c for c, kind in self.runs if kind == "speech")

    @property
    def hubert_tokens(self) -> int:
        return self.speech.count("[Hu")


def _check_token_layout(tokenizer: Any, expressive: bool, where: Path) -> None:
    """SpiRit-LM tokens must tokenize to their released ids, or prompts would mean something else."""
    last = LAST_ID if expressive else HUBERT_BASE + HUBERT_UNITS - 1
    for tid in (TEXT_ID, TEXT_ID + 1, HUBERT_BASE, HUBERT_BASE + HUBERT_UNITS - 1, last):
        token = token_of(tid)
        got = tokenizer.convert_tokens_to_ids(token)
        if got != tid:
            raise CheckpointError(
                f"{where}: tokenizer maps {token} to {got}, SpiRit-LM's id is {tid}; "
                "not a SpiRit-LM tokenizer"
            )


def _is_expressive(vocab_size: int) -> bool:
    """Expressive's embedding (32,768) holds the Pi and St tokens; Base's (32,512) ends at [Hu500]."""
    return vocab_size > LAST_ID


def checkpoint_variant(folder: str | Path) -> str:
    """base or expressive from a checkpoint's config.json, without loading weights."""
    config = Path(folder) / "config.json"
    require(config)
    try:
        vocab = int(json.loads(config.read_text())["vocab_size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config}: no usable vocab_size ({exc})") from exc
    return "expressive" if _is_expressive(vocab) else "base"


class SpiritLM:
    """A SpiRit-LM language model with its tokenizer (Base or Expressive, told by the vocabulary)."""

    def __init__(self, model: Any, tokenizer: Any, folder: Path, device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.folder = folder
        self.device = device
        self.expressive = _is_expressive(int(model.config.vocab_size))
        _check_token_layout(tokenizer, self.expressive, folder)
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        # The reference passes pad_token_id=-1, which breaks batching; any real id works under the
        # attention mask, and <unk> is never a target.
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id
        )
        self.pad_id = int(pad if pad is not None else self.eos_id)
        self._is_speech = torch.zeros(int(model.config.vocab_size), dtype=torch.bool)
        self._is_speech[HUBERT_BASE : LAST_ID + 1] = True

    @property
    def variant(self) -> str:
        return "expressive" if self.expressive else "base"

    @property
    def fingerprint(self) -> str:
        return fingerprint(weights_file(self.folder))

    @classmethod
    def from_checkpoint_dir(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> SpiritLM:
        """A ``spirit-lm-*`` folder (config.json, weights, tokenizer); bf16 on GPU, fp32 on CPU."""
        from transformers import AutoTokenizer, LlamaForCausalLM

        folder = Path(path)
        require(folder / "config.json")
        weights = weights_file(folder)
        dev = resolve(device)
        dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
        try:
            config = json.loads((folder / "config.json").read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{folder / 'config.json'}: not valid JSON ({exc})") from exc
        if config.get("model_type") != "llama":
            raise CheckpointError(
                f"{folder / 'config.json'}: model_type {config.get('model_type')!r}, SpiRit-LM is llama"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, add_bos_token=True, add_eos_token=False
            )
        except Exception as exc:
            raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from exc
        try:
            model = LlamaForCausalLM.from_pretrained(
                str(folder), dtype=dtype, local_files_only=True
            )
        except Exception as exc:
            raise CheckpointError(f"{weights}: cannot load the language model ({exc})") from exc
        model = model.to(dev).eval()  # type: ignore[arg-type]
        return cls(model, tokenizer, folder, dev)

    # -- prompts -----------------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        """Prompt ids exactly as the reference makes them (BOS, no EOS)."""
        return list(self.tokenizer(prompt)["input_ids"])

    def continuation(self, prompt: str, prompt_ids: list[int], new_ids: list[int]) -> str:
        """The reference's output string: decode everything, cut the prompt's characters, strip."""
        whole = self.tokenizer.decode(
            prompt_ids + new_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return str(whole[len(prompt) :]).strip()

    # -- generation --------------------------------------------------------------------------
    @torch.inference_mode()
    def generate_ids(
        self,
        prompts: Sequence[list[int]],
        banned: Sequence[int],
        config: SamplingConfig,
        seeds: Sequence[int],
        stop_runaway: bool = False,
    ) -> list[tuple[list[int], str]]:
        """New token ids and stop reason per prompt; all prompts in one left-padded batch."""
        from transformers import DynamicCache

        n = len(prompts)
        if n == 0:
            return []
        width = max(len(p) for p in prompts)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        # transformers' bad_words_ids never bans EOS (NoBadWordsLogitsProcessor filters it out), so
        # the reference's SPEECH forcing, which lists ids 0-31999, still lets generation end.
        allowed_eos = set(banned) - {self.eos_id}
        ban = torch.tensor(sorted(allowed_eos), dtype=torch.long, device=self.device)
        out: list[list[int]] = [[] for _ in range(n)]
        reasons = ["length"] * n
        active = list(range(n))
        cache = DynamicCache()
        step_ids, step_pos = ids, positions
        for _ in range(config.max_new_tokens):
            logits = self.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            logits = logits.float()
            if ban.numel():
                logits[:, ban] = float("-inf")
            picked = next_tokens(logits, config, [gens[i] for i in active]).tolist()
            keep: list[int] = []
            for row, (item, tok) in enumerate(zip(active, picked, strict=True)):
                out[item].append(int(tok))
                if tok == self.eos_id:
                    reasons[item] = "eos"
                elif stop_runaway and config.runaway_repeats and self._runaway(out[item], config):
                    reasons[item] = "runaway"
                else:
                    keep.append(row)
            if not keep:
                break
            next_ids = torch.tensor(picked, dtype=torch.long, device=self.device)[:, None]
            next_pos = step_pos[:, -1:] + 1
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                cache.batch_select_indices(index)
                mask, next_ids, next_pos = mask[index], next_ids[index], next_pos[index]
                active = [active[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            step_ids, step_pos = next_ids, next_pos
        return [(out[i], reasons[i]) for i in range(n)]

    def decodable(self, gen: Generation) -> bool:
        """The vocoder can voice it: Hu tokens, and for Expressive also Pi tokens (a missing style
        takes the default, a missing pitch makes the reference's decoder fail)."""
        return gen.hubert_tokens > 0 and (not self.expressive or "[Pi" in gen.speech)

    def _runaway(self, tokens: list[int], config: SamplingConfig) -> bool:
        tail = tokens[-config.runaway_period * config.runaway_repeats :]
        return is_runaway(tail, [bool(self._is_speech[t]) for t in tail], config)

    def generate(
        self,
        prompts: Sequence[str],
        output_modality: Modality,
        config: SamplingConfig,
        seeds: Sequence[int],
        max_batch: int = 16,
        force_modality: bool = True,
        retries: int = SPEECH_RETRIES,
    ) -> list[Generation]:
        """Continuations of built prompts; batches of ``max_batch`` by length, same result as one by one.

        A SPEECH output the vocoder cannot voice (no Hu token; for Expressive, no Pi token) is
        generated again (seed + attempt), ``retries`` times at most: the reference's STSP script
        retries 3 times when decoding fails.
        """
        modality: Modality = output_modality.upper()  # type: ignore[assignment]
        banned = forbidden_token_ids(modality, self.expressive) if force_modality else []
        encoded = [self.encode(p) for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        todo = list(range(len(prompts)))
        attempt = 0
        while todo:
            order = sorted(todo, key=lambda k: len(encoded[k]))
            for start in range(0, len(order), max(1, max_batch)):
                group = order[start : start + max(1, max_batch)]
                outs = self.generate_ids(
                    [encoded[k] for k in group],
                    banned,
                    config,
                    [seeds[k] + attempt for k in group],
                    stop_runaway=modality != "TEXT",
                )
                for k, (new, reason) in zip(group, outs, strict=True):
                    text = self.continuation(prompts[k], encoded[k], new)
                    runs = parse_generation(text)
                    if modality == "ARBITRARY":
                        runs = [
                            (c, kind)
                            for c, kind in runs
                            if kind == "text" or c.count("[Hu") >= SHORT_SPEECH_RUN
                        ]
                    results[k] = Generation(
                        text,
                        runs,
                        len(new),
                        reason,  # type: ignore[arg-type]
                        attempt + 1,
                        seeds[k],
                    )
            attempt += 1
            todo = [
                k
                for k in todo
                if modality == "SPEECH"
                and attempt <= retries
                and results[k] is not None
                and not self.decodable(results[k])  # type: ignore[arg-type]
            ]
        return [r for r in results if r is not None]

    def continue_inputs(
        self,
        inputs: Sequence[tuple[str, Any]] | None = None,
        output_modality: Modality = "ARBITRARY",
        prompt: str | None = None,
        speech_tokenizer: Any = None,
        config: SamplingConfig | None = None,
        seed: int = 0,
        speaker_id: int = 2,
    ) -> Generation:
        """One continuation of interleaved inputs (text, audio paths/arrays, token strings) or of a
        prebuilt prompt; speech output is voiced by ``speech_tokenizer``'s vocoder when it has one."""
        if prompt is None:
            if not inputs:
                raise ValueError("give interleaved inputs or a prompt")
            encode = speech_tokenizer.encode_string if speech_tokenizer is not None else None
            prompt = interleaved_prompt(inputs, output_modality, encode)
        [gen] = self.generate([prompt], output_modality, config or SamplingConfig(), [seed])
        vocoder = getattr(speech_tokenizer, "vocoder", None)
        if vocoder is not None and self.decodable(gen):
            gen.wav = speech_tokenizer.decode(gen.speech, speaker_id=speaker_id)
        return gen


def speech_input(
    value: str | Path | np.ndarray | torch.Tensor, encode_string: Callable[[np.ndarray], str]
) -> str:
    """A speech input as its token string: a token string as is, else audio (path or 16 kHz array)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return value
    if isinstance(value, str | Path):
        from storage.audio import load_audio_16k

        return encode_string(load_audio_16k(str(value)))
    wav = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    return encode_string(np.asarray(wav, dtype=np.float32).squeeze())


def interleaved_prompt(
    inputs: Sequence[tuple[str, Any]],
    output_modality: str,
    encode_string: Callable[[np.ndarray], str] | None = None,
) -> str:
    """``build_prompt`` over inputs whose speech may still be audio (paths or arrays)."""
    built: list[tuple[str, str]] = []
    for kind, value in inputs:
        if kind.lower() == "speech":
            if encode_string is None and not (isinstance(value, str) and value.startswith("[")):
                raise ValueError("speech given as audio needs a speech tokenizer")
            built.append(("speech", speech_input(value, encode_string or (lambda w: ""))))
        else:
            built.append((kind, str(value)))
    return build_prompt(built, output_modality)
