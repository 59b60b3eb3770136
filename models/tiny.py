"""Tiny random checkpoints in the released SpiRit-LM layout, for tests and the demo (no downloads).

Every file is written in the format the real checkpoints use (s3prl HuBERT dict, linear quantizer,
VQ-VAE config.yaml + model.pt, HF wav2vec2 style encoder, HiFi-GAN generator.pt with weight norm),
so the same loaders read them; sizes are tiny so everything runs in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from models.hifigan import CodeHiFiGAN
from models.hubert import NO_DROPOUT, hubert_config, to_fairseq_state_dict
from models.pitch import F0VQEncoder
from models.speech_tokenizer import HUBERT, PITCH_DIR, QUANTIZER, STYLE_DIR, VOCODER_DIRS

DIM = 32
HUBERT_CFG: dict[str, Any] = {
    "label_rate": 25.0,
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": DIM,
    "encoder_ffn_embed_dim": 2 * DIM,
    "encoder_attention_heads": 2,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_feature_layers": f"[({DIM},10,5)] + [({DIM},3,2)] * 4 + [({DIM},2,2)] * 2 + [({DIM},2,2)]",
    "conv_bias": False,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feature_grad_mult": 0.0,
    "final_dim": 16,
}
VQ_BLOCK: dict[str, Any] = {
    "input_emb_width": 2,
    "output_emb_width": 16,
    "levels": 1,
    "downs_t": [4],
    "strides_t": [2],
    "width": 16,
    "depth": 2,
    "m_conv": 1.0,
    "dilation_growth_rate": 3,
}
VQ_CFG: dict[str, Any] = {
    "features": "norm_f0_interp,vuv",
    "speaker_norm": False,
    "encoder_params": VQ_BLOCK,
    "decoder_params": VQ_BLOCK,
    "vq_params": {"l_bins": 64, "emb_width": 16, "mu": 0.99, "levels": 1},
}
VOCODER_COMMON: dict[str, Any] = {
    "resblock": "1",
    "upsample_rates": [5, 4, 4, 8],
    "upsample_kernel_sizes": [11, 8, 8, 16],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 7],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
    "num_embeddings": 501,
    "embedding_dim": 8,
    "code_hop_size": 640,
    "multispkr": True,
    "num_speakers": 4,
    "sampling_rate": 16000,
    "dur_predictor_params": {
        "encoder_embed_dim": 8,
        "var_pred_hidden_dim": 8,
        "var_pred_kernel_size": 3,
        "var_pred_dropout": 0.0,
    },
}
VOCODER_CFG = {
    "base": {**VOCODER_COMMON, "model_in_dim": 24, "multistyle": True, "num_styles": 12},
    "expressive": {
        **VOCODER_COMMON,
        "model_in_dim": 32,
        "num_f0_tokens": 64,
        "f0_hop_size": 1280,
        "num_style_tokens": 100,
        "style_hop_size": 16000,
    },
}


# The released models' dimensions (mHuBERT-base 25 Hz; wav2vec2-base style encoder), for benchmarks.
BASE_HUBERT_CFG: dict[str, Any] = {
    **HUBERT_CFG,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2 + [(512,2,2)]",
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "final_dim": 256,
}
STYLE_DIMS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": DIM,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 2 * DIM,
        "conv_dim": [16] * 7,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "classifier_proj_size": 24,
    },
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "conv_dim": [512] * 7,
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "classifier_proj_size": 256,
    },
}


def _hubert(root: Path, cfg: dict[str, Any]) -> None:
    from transformers import HubertModel

    dim = int(cfg["encoder_embed_dim"])
    config = hubert_config(cfg, cfg["encoder_layers"])
    model = HubertModel(config)
    # The released file has no post_extract_proj when the conv and embedding widths agree.
    state = to_fairseq_state_dict(model.state_dict(), drop_projection=config.conv_dim[-1] == dim)
    state["mask_emb"] = torch.rand(dim)  # a training-only parameter the released file carries
    path = root / HUBERT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model_cfg": cfg,
            "task_cfg": {"sample_rate": 16000, "normalize": False, "label_rate": 25.0},
            "model_weight": state,
            "dictionaries_symbols": [[str(i) for i in range(500)]],
        },
        path,
    )
    vocab = 500
    mid = dim - (vocab + 1)
    mlp = nn.Sequential(
        nn.Linear(dim, dim - mid // 4),
        nn.LeakyReLU(),
        nn.Linear(dim - mid // 4, dim - mid // 2),
        nn.LeakyReLU(),
        nn.Linear(dim - mid // 2, vocab + 1),
    )
    torch.save(
        {
            "model_cfg": {"vocab_size": vocab, "dim": dim, "upstream_dim": dim},
            "model_weight": mlp.state_dict(),
        },
        root / QUANTIZER,
    )


def _vqvae(root: Path) -> None:
    folder = root / PITCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(VQ_CFG, sort_keys=False))
    enc = F0VQEncoder(VQ_CFG)
    nn.init.normal_(enc.codebook, std=1.0)
    state = {
        "encoder.level_blocks.0." + k.replace("level.", "", 1): v
        for k, v in enc.state_dict().items()
        if k.startswith("level.")
    }
    state["vq.level_blocks.0.k"] = enc.codebook.clone()
    state.update(_vq_decoder_state())
    torch.save({"model": state}, folder / "model.pt")


def _vq_decoder_state() -> dict[str, torch.Tensor]:
    """The decoder half of the released VQ-VAE file (unused for tokenizing, present for compatibility)."""
    w, depth = VQ_BLOCK["width"], VQ_BLOCK["depth"]
    prefix = "decoder.level_blocks.0.model."
    state = {
        f"{prefix}0.weight": torch.randn(w, VQ_BLOCK["output_emb_width"], 3) * 0.1,
        f"{prefix}0.bias": torch.zeros(w),
    }
    for i in range(1, VQ_BLOCK["downs_t"][0] + 1):
        for j in range(depth):
            state[f"{prefix}{i}.0.model.{j}.model.1.weight"] = torch.randn(w, w, 3) * 0.1
            state[f"{prefix}{i}.0.model.{j}.model.1.bias"] = torch.zeros(w)
            state[f"{prefix}{i}.0.model.{j}.model.3.weight"] = torch.randn(w, w, 1) * 0.1
            state[f"{prefix}{i}.0.model.{j}.model.3.bias"] = torch.zeros(w)
        state[f"{prefix}{i}.1.weight"] = torch.randn(w, w, 4) * 0.1
        state[f"{prefix}{i}.1.bias"] = torch.zeros(w)
    state["decoder.out.weight"] = (
        torch.randn(VQ_BLOCK["input_emb_width"], VQ_BLOCK["output_emb_width"], 3) * 0.1
    )
    state["decoder.out.bias"] = torch.zeros(VQ_BLOCK["input_emb_width"])
    return state


def _style(root: Path, size: str) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(
        **STYLE_DIMS[size],
        conv_kernel=[10, 3, 3, 3, 3, 2, 2],
        conv_stride=[5, 2, 2, 2, 2, 2, 2],
        conv_bias=False,
        id2label={i: f"style{i}" for i in range(100)},
        label2id={f"style{i}": i for i in range(100)},
        **NO_DROPOUT,
        architectures=["Wav2Vec2StyleEncoder"],
    )
    model = Wav2Vec2ForSequenceClassification(config)
    folder = root / STYLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    config.to_json_file(str(folder / "config.json"))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["_float_tensor"] = torch.zeros(1)
    torch.save(state, folder / "pytorch_model.bin")


def _with_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Store conv weights as (weight_g, weight_v) pairs, as the released generators do."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        is_conv = (
            key.endswith(".weight") and value.ndim == 3 and not key.startswith("dur_predictor")
        )
        if is_conv:
            stem = key[: -len(".weight")]
            out[f"{stem}.weight_g"] = (
                value.reshape(value.shape[0], -1).norm(dim=1).reshape(-1, 1, 1).clone()
            )
            out[f"{stem}.weight_v"] = value.clone()
        else:
            out[key] = value.clone()
    return out


def _vocoders(root: Path) -> None:
    for variant, cfg in VOCODER_CFG.items():
        folder = root / VOCODER_DIRS[variant]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg, indent=1))
        generator = CodeHiFiGAN(cfg)
        torch.save(
            {"generator": _with_weight_norm(generator.state_dict())}, folder / "generator.pt"
        )
        (folder / "speakers.txt").write_text(
            "".join(f"ex0{i + 1}\n" for i in range(cfg["num_speakers"]))
        )
        if variant == "base":
            (folder / "styles.txt").write_text(
                "".join(f"style{i}\n" for i in range(cfg["num_styles"]))
            )


LM_DIRS = {
    "base": "spiritlm_model/spirit-lm-base-7b",
    "expressive": "spiritlm_model/spirit-lm-expressive-7b",
}
LM_VOCAB = {"base": 32512, "expressive": 32768}  # embedding rows of the released models
_LM_CHARS = (
    "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-_/&%$#@+=*<>"
)


def _text_tokenizer() -> Any:
    """A LLaMA-style 32,000-id text vocabulary (specials, 256 byte-fallback pieces, characters).

    Built directly as a ``tokenizers`` BPE without merges (converting a 32k SentencePiece model takes
    ~40 s here); the id layout is what matters: SpiRit-LM's 667 tokens then get ids 32000–32666.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for ch in _LM_CHARS:
        vocab.setdefault(ch, len(vocab))
    while len(vocab) < 32000:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first", split=False
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


_LM_WORDS = tuple(
    [
        "the",
        "and",
        "you",
        "that",
        "was",
        "for",
        "with",
        "his",
        "her",
        "not",
        "but",
        "are",
        "have",
        "this",
        "they",
        "from",
        "what",
        "all",
        "were",
        "when",
        "said",
        "there",
        "one",
        "would",
        "their",
        "will",
        "she",
        "him",
        "been",
        "has",
        "more",
        "who",
        "out",
        "about",
        "like",
        "time",
        "into",
    ]
)


def write_llama_sentencepiece(folder: str | Path) -> Path:
    """A LLaMA-2-shaped SentencePiece ``tokenizer.model`` (BPE, byte fallback, 32,000 pieces).

    Written as a model proto (training a 32k vocabulary needs a large corpus); common words and
    their prefixes are pieces so text encodes to word-sized ids, as with the real vocabulary.
    """
    from sentencepiece import sentencepiece_model_pb2

    sp_pb2: Any = sentencepiece_model_pb2  # generated protobuf module, untyped

    proto = sp_pb2.ModelProto()
    proto.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = 32000
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = 0, 1, 2
    proto.trainer_spec.pad_id = -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    piece = sp_pb2.ModelProto.SentencePiece
    seen: set[str] = set()

    def add(text: str, kind: int, score: float = 0.0) -> None:
        if text not in seen:
            seen.add(text)
            proto.pieces.append(piece(piece=text, score=score, type=kind))

    add("<unk>", piece.UNKNOWN)
    add("<s>", piece.CONTROL)
    add("</s>", piece.CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", piece.BYTE)
    for ch in _LM_CHARS:
        add(ch, piece.NORMAL, -1000.0)
    for rank, word in enumerate(_LM_WORDS):
        for k in range(2, len(word) + 2):
            add("▁" + word[: k - 1], piece.NORMAL, -float(rank * 10 + k))
    while len(proto.pieces) < 32000:
        add(f"<unused{len(proto.pieces)}>", piece.UNUSED)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(proto.SerializeToString())
    return out / "tokenizer.model"


def _language_models(root: Path) -> None:
    """Tiny LlamaForCausalLM + tokenizer per variant, in the ``spiritlm_model/`` layout."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from schemas.tokens import HUBERT_BASE, HUBERT_UNITS, LAST_ID, TEXT_ID, token_of

    last_id = {"base": HUBERT_BASE + HUBERT_UNITS - 1, "expressive": LAST_ID}
    for variant, rel in LM_DIRS.items():
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        _text_tokenizer().save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "LlamaTokenizer",
                    "bos_token": "<s>",
                    "eos_token": "</s>",
                    "unk_token": "<unk>",
                    "add_bos_token": True,
                    "add_eos_token": False,
                    "model_max_length": 4096,
                },
                indent=1,
            )
        )
        tokenizer = LlamaTokenizer.from_pretrained(str(folder), local_files_only=True)
        tokenizer.add_tokens([token_of(i) for i in range(TEXT_ID, last_id[variant] + 1)])
        tokenizer.save_pretrained(str(folder))
        config = LlamaConfig(
            vocab_size=LM_VOCAB[variant],
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=False,
        )
        LlamaForCausalLM(config).save_pretrained(str(folder))


CLASSIFIER_DIRS = {
    "text": "stsp_classifiers/text_classifier",
    "speech": "stsp_classifiers/speech_classifier",
}


def write_tiny_classifiers(root: str | Path) -> dict[str, Path]:
    """Random STSP classifiers in the paper's formats: a 3-class text sequence classifier with its
    tokenizer, and a wav2vec2 audio classifier of Expresso emotions with its feature extractor."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    out = Path(root)
    text_dir, speech_dir = out / CLASSIFIER_DIRS["text"], out / CLASSIFIER_DIRS["speech"]
    sentiments = {0: "negative", 1: "neutral", 2: "positive"}
    PreTrainedTokenizerFast(
        tokenizer_object=_text_tokenizer(), unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(str(text_dir))
    text_config = BertConfig(
        vocab_size=32000,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
        id2label=sentiments,
        label2id={v: k for k, v in sentiments.items()},
    )
    BertForSequenceClassification(text_config).save_pretrained(str(text_dir))
    emotions = {0: "angry", 1: "default", 2: "happy", 3: "sad"}
    speech_config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        id2label=emotions,
        label2id={v: k for k, v in emotions.items()},
    )
    Wav2Vec2ForSequenceClassification(speech_config).save_pretrained(str(speech_dir))
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True
    ).save_pretrained(str(speech_dir))
    return {"text": text_dir, "speech": speech_dir}


def write_tiny_checkpoints(root: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write the whole speech-tokenizer checkpoint set under ``root`` (deterministic for a seed).

    ``size="base"`` gives the released models' dimensions for the encoders (random weights, for
    benchmarks); the vocoders and the F0 VQ-VAE stay tiny.
    """
    if size not in STYLE_DIMS:
        raise ValueError(f"size {size!r}: expected one of {', '.join(STYLE_DIMS)}")
    out = Path(root)
    torch.manual_seed(seed)
    _hubert(out, HUBERT_CFG if size == "tiny" else BASE_HUBERT_CFG)
    _vqvae(out)
    _style(out, size)
    _vocoders(out)
    _language_models(out)
    write_tiny_classifiers(out)
    (out / "README.txt").write_text(
        "Tiny RANDOM SpiRit-LM checkpoints written by `spiritflow checkpoints tiny` for tests and demos.\n"
        "Layout and formats match the released checkpoints; the weights are random (units carry no meaning).\n"
    )
    return out
