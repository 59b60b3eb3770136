"""`spiritflow checkpoints tiny`: the released layout and formats, loadable, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from flows.cli import main
from models.hubert import convert_state_dict, to_fairseq_state_dict
from models.speech_tokenizer import SpeechTokenizer

RELEASED = FIXTURES / "reference-tiny" / "checkpoints" / "speech_tokenizer"
FILES = [
    ("hubert_25hz/mhubert_base_25hz.pt", "model_weight"),
    ("hubert_25hz/L11_quantizer_500.pt", "model_weight"),
    ("vqvae_f0_quantizer/model.pt", "model"),
    ("style_encoder_w2v2/pytorch_model.bin", None),
    ("hifigan_spiritlm_base/generator.pt", "generator"),
    ("hifigan_spiritlm_expressive_w2v2/generator.pt", "generator"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    assert main(["checkpoints", "tiny", str(root)]) == 0
    return root


@pytest.mark.parametrize("rel, sub", FILES)
def test_same_keys_and_shapes_as_the_released_format(tiny: Path, rel: str, sub: str | None) -> None:
    def shapes(path: Path) -> dict[str, tuple[int, ...]]:
        data = torch.load(path, weights_only=True)
        return {k: tuple(v.shape) for k, v in (data[sub] if sub else data).items()}

    assert shapes(tiny / "speech_tokenizer" / rel) == shapes(RELEASED / rel)


def test_deterministic(tiny: Path, tmp_path: Path) -> None:
    main(["checkpoints", "tiny", str(tmp_path)])
    for rel, _ in FILES:
        assert (tmp_path / "speech_tokenizer" / rel).read_bytes() == (
            tiny / "speech_tokenizer" / rel
        ).read_bytes()


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_tiny_checkpoints_tokenize_and_decode(tiny: Path, variant: str) -> None:
    tok = SpeechTokenizer.from_checkpoint_dir(tiny, variant=variant)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    wav = (
        0.3 * np.sin(np.arange(48_000) / 16_000 * 2 * np.pi * 180)
        + 0.01 * rng.standard_normal(48_000)
    ).astype(np.float32)
    units = tok.encode_units(wav)
    assert len(units["hubert"]) == 74 and set(units) == set(tok.streams)
    assert len(tok.decode(tok.encode_string(wav))) % 640 == 0


def test_hubert_name_mapping_round_trips() -> None:
    state = torch.load(RELEASED / "hubert_25hz" / "mhubert_base_25hz.pt", weights_only=True)[
        "model_weight"
    ]
    hf = convert_state_dict(state, output_layer=12)
    back = to_fairseq_state_dict(hf, drop_projection=False)
    assert set(back) | {"mask_emb"} == set(state) | {"mask_emb"}


@pytest.mark.parametrize(
    "variant, vocab, last", [("base", 32512, 32502), ("expressive", 32768, 32666)]
)
def test_tiny_language_model_and_tokenizer(tiny: Path, variant: str, vocab: int, last: int) -> None:
    """The LM dir loads offline; the tokenizer's SpiRit-LM ids equal REFERENCE.md's table."""
    from transformers import LlamaForCausalLM, LlamaTokenizer

    from schemas.tokens import token_of

    folder = tiny / "spiritlm_model" / f"spirit-lm-{variant}-7b"
    tok = LlamaTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert all(tok.convert_tokens_to_ids(token_of(i)) == i for i in range(32000, last + 1))
    text = "[Text]Hello world![Speech][Hu12][Hu500]"
    ids = tok(text)["input_ids"]
    assert ids[0] == 1 and ids[-2:] == [32014, 32502]
    assert tok.decode(ids, skip_special_tokens=True) == text
    model = LlamaForCausalLM.from_pretrained(str(folder), local_files_only=True)
    assert model.config.vocab_size == vocab
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), vocab)


def test_fingerprints_are_remembered_across_runs_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled run must not re-hash unchanged weights, and a changed file must be re-hashed."""
    import hashlib
    import json
    import os

    from models import checkpoints

    monkeypatch.setenv("SPIRITFLOW_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights v1")
    real = hashlib.sha256(b"weights v1").hexdigest()
    assert checkpoints.fingerprint(weights) == real
    cache = tmp_path / "cache" / "fingerprints.json"
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [real]

    # A new process (empty in-memory cache) takes the remembered value without reading the file.
    checkpoints._fingerprint.cache_clear()
    cache.write_text(json.dumps({k: "f" * 64 for k in entries}))
    assert checkpoints.fingerprint(weights) == "f" * 64

    # Rewritten (new mtime): hashed again, and the stale entry is replaced, not kept beside it.
    checkpoints._fingerprint.cache_clear()
    weights.write_bytes(b"weights v2")
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert checkpoints.fingerprint(weights) == hashlib.sha256(b"weights v2").hexdigest()
    assert len(json.loads(cache.read_text())) == 1

    # An unwritable cache only costs hashing again.
    checkpoints._fingerprint.cache_clear()
    monkeypatch.setenv("SPIRITFLOW_CACHE_DIR", str(weights))  # a file, not a folder
    assert checkpoints.fingerprint(weights) == hashlib.sha256(b"weights v2").hexdigest()


def test_models_built_without_random_init_equal_a_normal_load() -> None:
    """Meta-device construction + the checkpoint's tensors gives the same modules as init + load."""
    from transformers import HubertConfig, HubertModel

    from models.checkpoints import build_loaded

    config = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = HubertModel(config).eval()
    state = {k: v for k, v in reference.state_dict().items() if k != "masked_spec_embed"}
    model, missing, unexpected = build_loaded(lambda: HubertModel(config), state)
    assert missing == ["masked_spec_embed"] and unexpected == []
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert torch.count_nonzero(model.masked_spec_embed) == 0
    wav = torch.randn(1, 4000)
    with torch.inference_mode():
        same = reference(wav).last_hidden_state, model.eval()(wav).last_hidden_state
    torch.testing.assert_close(*same, rtol=0, atol=0)
