"""mHuBERT-25Hz as transformers' ``HubertModel``, built from the released s3prl "converted" checkpoint.

The fairseq state dict is renamed to transformers' names and the config is built from ``model_cfg``;
only the first ``output_layer`` transformer blocks are kept (their output is what the quantizer
reads, and later blocks would be compute the reference never uses).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Imported eagerly: transformers' lazy imports are not safe when first triggered from worker threads.
from transformers import HubertConfig, HubertModel

from models.checkpoints import build_loaded, load_tensors, parse_layer_spec
from models.errors import CheckpointError

log = logging.getLogger(__name__)

# fairseq HubertConfig defaults for fields a converted checkpoint may omit.
FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
}
# Inference only: every dropout and layer drop off (transformers' configs default to training values).
NO_DROPOUT: dict[str, Any] = {
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "layerdrop": 0.0,
}
_RENAMES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (
        r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.",
        r"feature_extractor.conv_layers.\1.layer_norm.",
    ),
    (
        r"^feature_extractor\.conv_layers\.(\d+)\.2\.",
        r"feature_extractor.conv_layers.\1.layer_norm.",
    ),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (
        r"^encoder\.pos_conv\.0\.weight_g$",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    ),
    (
        r"^encoder\.pos_conv\.0\.weight_v$",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    ),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"\.self_attn\.(q|k|v|out)_proj\.", r".attention.\1_proj."),
    (r"\.self_attn_layer_norm\.", ".layer_norm."),
    (r"\.fc1\.", ".feed_forward.intermediate_dense."),
    (r"\.fc2\.", ".feed_forward.output_dense."),
]
_DROPPED = re.compile(r"^(mask_emb|label_embs_concat|final_proj\.|encoder\.layers\.(\d+)\.)")


def hubert_config(model_cfg: dict[str, Any], output_layer: int) -> Any:
    """transformers ``HubertConfig`` equivalent to a fairseq ``model_cfg``, truncated at ``output_layer``."""
    cfg = {**FAIRSEQ_DEFAULTS, **model_cfg}
    layers = parse_layer_spec(str(cfg["conv_feature_layers"]))
    if not 1 <= output_layer <= int(cfg["encoder_layers"]):
        raise CheckpointError(f"output layer {output_layer} not in 1..{cfg['encoder_layers']}")
    if cfg["extractor_mode"] not in ("default", "layer_norm"):
        raise CheckpointError(f"extractor_mode {cfg['extractor_mode']!r} is not supported")
    config = HubertConfig(
        hidden_size=int(cfg["encoder_embed_dim"]),
        num_hidden_layers=output_layer,
        num_attention_heads=int(cfg["encoder_attention_heads"]),
        intermediate_size=int(cfg["encoder_ffn_embed_dim"]),
        hidden_act=str(cfg["activation_fn"]),
        feat_extract_norm="group" if cfg["extractor_mode"] == "default" else "layer",
        feat_extract_activation="gelu",
        conv_dim=[d for d, _, _ in layers],
        conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers],
        conv_bias=bool(cfg["conv_bias"]),
        num_conv_pos_embeddings=int(cfg["conv_pos"]),
        num_conv_pos_embedding_groups=int(cfg["conv_pos_groups"]),
        do_stable_layer_norm=bool(cfg["layer_norm_first"]),
        feat_proj_layer_norm=True,
        **NO_DROPOUT,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        layer_norm_eps=1e-5,
    )
    config._attn_implementation = "sdpa"
    return config


def hop_length(model_cfg: dict[str, Any]) -> int:
    """Samples per frame: the product of the conv strides (640 for the 25 Hz model)."""
    hop = 1
    for _, _, stride in parse_layer_spec(
        str({**FAIRSEQ_DEFAULTS, **model_cfg}["conv_feature_layers"])
    ):
        hop *= stride
    return hop


def convert_state_dict(
    fairseq: dict[str, torch.Tensor], output_layer: int
) -> dict[str, torch.Tensor]:
    """fairseq names → transformers names; blocks past ``output_layer`` and training heads dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in fairseq.items():
        dropped = _DROPPED.match(key)
        if dropped and not (dropped.group(2) is not None and int(dropped.group(2)) < output_layer):
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


class HubertFeatures(nn.Module):
    """Layer-``output_layer`` features; the conv front-end runs per utterance so padding never leaks."""

    def __init__(self, model: Any, normalize: bool, hop: int) -> None:
        super().__init__()
        self.model: Any = model.eval().requires_grad_(False)
        self.normalize = normalize
        self.hop = hop

    @classmethod
    def from_checkpoint(cls, path: Path, output_layer: int = 11) -> HubertFeatures:

        ckpt = load_tensors(path)
        if not isinstance(ckpt, dict) or not {"model_cfg", "model_weight"} <= set(ckpt):
            raise CheckpointError(
                f"{path}: not an s3prl converted HuBERT checkpoint (model_cfg/model_weight)"
            )
        model_cfg = dict(ckpt["model_cfg"])
        task_cfg = dict(ckpt.get("task_cfg") or {})
        config = hubert_config(model_cfg, output_layer)
        state = convert_state_dict(ckpt["model_weight"], output_layer)
        proj = "feature_projection.projection.weight"
        if proj not in state:
            if config.conv_dim[-1] != config.hidden_size:
                raise CheckpointError(f"{path}: no post_extract_proj but conv dim != embed dim")
            state[proj] = torch.eye(config.hidden_size)
            state["feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
        if config.do_stable_layer_norm:  # fairseq skips the final norm when a layer is chosen
            state = {k: v for k, v in state.items() if not k.startswith("encoder.layer_norm.")}

        def build() -> Any:
            model: Any = HubertModel(config)
            if config.do_stable_layer_norm:
                model.encoder.layer_norm = nn.Identity()
            return model

        model, missing, unexpected = build_loaded(build, state)
        missing = [k for k in missing if k != "masked_spec_embed"]
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return cls(model, bool(task_cfg.get("normalize", False)), hop_length(model_cfg))

    def frames(self, num_samples: int) -> int:
        """Number of frames the conv stack produces for ``num_samples`` input samples."""
        length = torch.tensor(num_samples)
        for kernel, stride in zip(
            self.model.config.conv_kernel, self.model.config.conv_stride, strict=True
        ):
            length = torch.div(length - kernel, stride, rounding_mode="floor") + 1
        return int(length)

    @torch.inference_mode()
    def forward(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """1-D float waveforms (16 kHz) → one (frames, dim) tensor each; batched over the encoder."""
        hidden = []
        for wav in wavs:
            x = wav.reshape(1, -1).float()
            if self.normalize:
                x = nn.functional.layer_norm(x, x.shape[-1:])
            feats = self.model.feature_extractor(x).transpose(1, 2)
            projected = self.model.feature_projection(feats)
            if isinstance(
                projected, tuple
            ):  # some transformers versions also return the normed input
                projected = projected[0]
            hidden.append(projected[0])
        lengths = [h.shape[0] for h in hidden]
        if len(hidden) == 1:
            out = self.model.encoder(hidden[0][None]).last_hidden_state
            return [out[0]]
        padded = nn.utils.rnn.pad_sequence(hidden, batch_first=True)
        mask = (
            torch.arange(padded.shape[1], device=padded.device)[None, :]
            < torch.tensor(lengths, device=padded.device)[:, None]
        )
        out = self.model.encoder(padded, attention_mask=mask).last_hidden_state
        return [out[i, :n] for i, n in enumerate(lengths)]


_TO_FAIRSEQ = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (
        r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
        r"feature_extractor.conv_layers.\1.2.",
    ),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (
        r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$",
        "encoder.pos_conv.0.weight_g",
    ),
    (
        r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$",
        "encoder.pos_conv.0.weight_v",
    ),
    (r"^encoder\.pos_conv_embed\.conv\.bias$", "encoder.pos_conv.0.bias"),
    (r"\.attention\.(q|k|v|out)_proj\.", r".self_attn.\1_proj."),
    (r"^(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
    (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
    (r"\.feed_forward\.output_dense\.", ".fc2."),
    (r"^masked_spec_embed$", "mask_emb"),
]


def to_fairseq_state_dict(
    hf_state: dict[str, torch.Tensor], drop_projection: bool
) -> dict[str, torch.Tensor]:
    """transformers names → the released (fairseq) names; used to write tiny checkpoints."""
    out: dict[str, torch.Tensor] = {}
    for key, value in hf_state.items():
        if drop_projection and key.startswith("feature_projection.projection."):
            continue
        new = key
        for pattern, repl in _TO_FAIRSEQ:
            new = re.sub(pattern, repl, new)
        out[new] = value.detach().clone()
    return out
