"""Text → ids for corpus building, in SpiRit-LM's id layout (LLaMA-2 text 0–31999, then 667 tokens).

Two sources, checked against REFERENCE.md's table before any text is encoded:
- a folder with a LLaMA-family SentencePiece ``tokenizer.model`` (32,000 pieces): SpiRit-LM's
  tokens are appended after it, so ``[Text]`` is 32000 and ``[St99]`` 32666;
- a SpiRit-LM checkpoint folder (``tokenizer.json`` with the added tokens, or ``tokenizer.model``
  plus ``added_tokens.json``/``tokenizer_config.json``), used as it is.
Unit tokens are never tokenized from strings: their ids come from ``schemas.tokens`` arithmetic,
which these checks prove equal to what the tokenizer would give.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.errors import CheckpointError
from schemas.tokens import HUBERT_BASE, LAST_ID, TEXT_ID, TEXT_VOCAB, token_of

SENTENCEPIECE = "tokenizer.model"
HF_TOKENIZER = "tokenizer.json"


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _declared_special_ids(folder: Path) -> dict[str, int]:
    """Added tokens a checkpoint folder declares (``added_tokens.json``, ``tokenizer_config.json``)."""
    found: dict[str, int] = {}
    added = folder / "added_tokens.json"
    if added.is_file():
        found.update({str(k): int(v) for k, v in json.loads(added.read_text()).items()})
    config = folder / "tokenizer_config.json"
    if config.is_file():
        decoder = json.loads(config.read_text()).get("added_tokens_decoder") or {}
        for tid, entry in decoder.items():
            if isinstance(entry, dict) and "content" in entry:
                found[str(entry["content"])] = int(tid)
    return found


def _check_layout(declared: dict[str, int], where: Path) -> None:
    """Every SpiRit-LM token a tokenizer declares must sit at its released id."""
    for tid in range(TEXT_ID, LAST_ID + 1):
        token = token_of(tid)
        if token in declared and declared[token] != tid:
            raise CheckpointError(
                f"{where}: token {token} has id {declared[token]}, SpiRit-LM's is {tid}; "
                "this tokenizer would give ids the released models do not know"
            )


class TextTokenizer:
    """Encodes text spans to ids; ``decode_sample`` turns a whole sample's ids back into its string."""

    def __init__(
        self,
        encode: Callable[[str], list[int]],
        decode: Callable[[list[int]], str],
        bos_id: int,
        eos_id: int,
        source: str,
        fingerprint: str,
        units_last_id: int,
    ) -> None:
        self._encode = encode
        self._decode = decode
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.source = source
        self.fingerprint = fingerprint
        self.units_last_id = units_last_id  # 32502 when the tokenizer only knows Base's tokens

    @classmethod
    def from_dir(cls, folder: str | Path) -> TextTokenizer:
        root = Path(folder)
        if not root.is_dir():
            raise CheckpointError(f"{root}: tokenizer folder not found")
        if (root / HF_TOKENIZER).is_file():
            return cls._from_tokenizers(root / HF_TOKENIZER)
        if (root / SENTENCEPIECE).is_file():
            return cls._from_sentencepiece(root / SENTENCEPIECE)
        raise CheckpointError(
            f"{root}: no {SENTENCEPIECE} (LLaMA-family SentencePiece) or {HF_TOKENIZER} "
            "(SpiRit-LM checkpoint folder) in it"
        )

    @classmethod
    def _from_sentencepiece(cls, path: Path) -> TextTokenizer:
        import sentencepiece as spm

        try:
            sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: not a SentencePiece model ({exc})") from exc
        pieces = sp.get_piece_size()
        if pieces != TEXT_VOCAB:
            raise CheckpointError(
                f"{path}: {pieces} pieces; SpiRit-LM's tokens start at id {TEXT_VOCAB}, so the text "
                f"vocabulary must be LLaMA-2's {TEXT_VOCAB} pieces"
            )
        declared = _declared_special_ids(path.parent)
        _check_layout(declared, path.parent)
        base_only = bool(declared) and token_of(LAST_ID) not in declared

        def encode(text: str) -> list[int]:
            return list(sp.encode(text))

        def decode(ids: list[int]) -> str:
            return str(sp.decode(ids))

        return cls(
            encode,
            decode,
            int(sp.bos_id()),
            int(sp.eos_id()),
            str(path),
            f"sentencepiece:{_sha(path)}",
            HUBERT_BASE + 500 if base_only else LAST_ID,
        )

    @classmethod
    def _from_tokenizers(cls, path: Path) -> TextTokenizer:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust loader raises its own exception type
            raise CheckpointError(f"{path}: not a tokenizers file ({exc})") from exc
        declared: dict[str, int] = {}
        for tid in range(TEXT_ID, LAST_ID + 1):
            found = tok.token_to_id(token_of(tid))
            if found is not None:
                declared[token_of(tid)] = found
        if "[Text]" not in declared:
            raise CheckpointError(
                f"{path}: has no [Text]/[Speech]/[Hu..] tokens; give a SpiRit-LM checkpoint "
                f"folder, or a folder with a LLaMA-family {SENTENCEPIECE}"
            )
        _check_layout(declared, path.parent)
        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        if bos is None or eos is None:
            raise CheckpointError(f"{path}: no <s>/</s> tokens")

        def encode(text: str) -> list[int]:
            return list(tok.encode(text, add_special_tokens=False).ids)

        def decode(ids: list[int]) -> str:
            return str(tok.decode(ids, skip_special_tokens=False))

        last = LAST_ID if token_of(LAST_ID) in declared else HUBERT_BASE + 500
        return cls(encode, decode, bos, eos, str(path), f"tokenizers:{_sha(path)}", last)

    def encode(self, text: str) -> list[int]:
        """Ids of one text span (no BOS/EOS; SpiRit-LM markers are added by the caller)."""
        return self._encode(text)

    def decode_sample(self, ids: Sequence[int] | np.ndarray) -> str:
        """A sample's string from its ids: SpiRit-LM tokens by table, text runs by the tokenizer."""
        out: list[str] = []
        run: list[int] = []
        for tid in np.asarray(ids, dtype=np.int64).tolist():
            if tid >= TEXT_ID:
                if run:
                    out.append(self._decode(run))
                    run = []
                out.append(token_of(tid))
            else:
                run.append(tid)
        if run:
            out.append(self._decode(run))
        return "".join(out)
