"""Generation benchmark: SpiRit-LM generated tokens/s, the reference's batch-1 way vs batched.

Run: ``.venv/bin/python benchmarks/generate_bench.py [--sizes tiny,1b] [--prompts 8]``
(writes benchmarks/results/generate.json). For each random LlamaForCausalLM size, on the same
STSP-like SPEECH-output prompts (speech token strings of varied length), in one run:
  reference_batch1  transformers ``generate`` one prompt at a time with ``bad_words_ids`` and the
                    STSP sampling settings, seeded per prompt (what the reference STSP script does)
  ours_batch1       ``SpiritLM.generate`` with max_batch=1 (same tokens as the reference way)
  ours_batchN       the same prompts in left-padded batches of N (same tokens as batch 1)
  limits            torch.matmul GFLOP/s (compute) and tensor-copy GB/s (memory) on all cores; a
                    decode step streams every weight once, so batch-1 decoding is memory-bound and
                    its limit is bandwidth / weight bytes, while batching approaches the matmul one.
On a CUDA machine the 7b size (LLaMA-2-7B dims, bf16) is added when ``--sizes`` includes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.sampling import SamplingConfig, item_seed  # noqa: E402
from models.spiritlm import SpiritLM  # noqa: E402
from schemas.tokens import forbidden_token_ids  # noqa: E402

SIZES: dict[str, dict[str, int]] = {
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    },
    # ≈ 0.94 B parameters: LLaMA-style 16 × 2048 with the Expressive vocabulary
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 5504,
        "num_hidden_layers": 16,
        "num_attention_heads": 16,
    },
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
    },
}


def build_model(size: str, tokenizer_dir: Path, device: torch.device) -> SpiritLM:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    dims = SIZES[size]
    config = LlamaConfig(
        vocab_size=32768,
        max_position_embeddings=4096,
        num_key_value_heads=dims["num_attention_heads"],
        bos_token_id=1,
        eos_token_id=2,
        **dims,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return SpiritLM(model, tokenizer, tokenizer_dir, device)


def prompts(n: int, seed: int = 0) -> list[str]:
    """S→S-style prompts: expressive token strings of 20-60 Hu tokens (style, pitch interleaved)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        hu = int(rng.integers(20, 60))
        parts = [f"[St{rng.integers(100)}]"]
        for k in range(hu):
            if k % 2 == 0:
                parts.append(f"[Pi{rng.integers(64)}]")
            parts.append(f"[Hu{rng.integers(501)}]")
        out.append("[Speech]" + "".join(parts))
    return out


def limits(device: torch.device) -> dict[str, float]:
    """Best matmul GFLOP/s and copy GB/s (read + write) measured now, on all cores."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    best = 0.0
    for m, k, n in ((512, 2048, 5504), (512, 5504, 2048), (1024, 2048, 2048)):
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        _sync(device)
        best = max(best, 2 * m * k * n * 10 / (time.perf_counter() - start) / 1e9)
    src = torch.randn(64 << 20, device=device)  # 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync(device)
    start = time.perf_counter()
    for _ in range(5):
        dst.copy_(src)
    _sync(device)
    bandwidth = 2 * src.numel() * 4 * 5 / (time.perf_counter() - start) / 1e9
    return {"matmul_gflops": round(best, 1), "copy_gbps": round(bandwidth, 1)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_way(
    lm: SpiritLM, texts: list[str], config: SamplingConfig, seeds: list[int]
) -> tuple[float, int, list[list[int]]]:
    from transformers import GenerationConfig

    banned = [[i] for i in forbidden_token_ids("SPEECH", lm.expressive)]
    gen_config = GenerationConfig(
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_new_tokens=config.max_new_tokens,
        pad_token_id=lm.pad_id,
    )
    outs, tokens = [], 0
    start = time.perf_counter()
    for text, seed in zip(texts, seeds, strict=True):
        torch.manual_seed(seed)
        enc = lm.tokenizer(text, return_tensors="pt").to(lm.device)
        out = lm.model.generate(**enc, generation_config=gen_config, bad_words_ids=banned)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        outs.append(new)
        tokens += len(new)
    _sync(lm.device)
    return time.perf_counter() - start, tokens, outs


def ours(
    lm: SpiritLM, texts: list[str], config: SamplingConfig, seeds: list[int], batch: int
) -> tuple[float, int, list[list[int]]]:
    banned = forbidden_token_ids("SPEECH", lm.expressive)
    encoded = [lm.encode(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda k: len(encoded[k]))
    outs: dict[int, list[int]] = {}
    start = time.perf_counter()
    for s in range(0, len(order), batch):
        group = order[s : s + batch]
        results = lm.generate_ids(
            [encoded[k] for k in group], banned, config, [seeds[k] for k in group]
        )
        for k, (new, _) in zip(group, results, strict=True):
            outs[k] = new
    _sync(lm.device)
    return (
        time.perf_counter() - start,
        sum(len(v) for v in outs.values()),
        [outs[k] for k in range(len(texts))],
    )


def bench_size(
    size: str,
    n_prompts: int,
    new_tokens: int,
    batches: list[int],
    tokenizer_dir: Path,
    device: torch.device,
) -> dict[str, Any]:
    lm = build_model(size, tokenizer_dir, device)
    params = sum(p.numel() for p in lm.model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    texts = prompts(n_prompts)
    seeds = [item_seed(0, k) for k in range(n_prompts)]
    config = SamplingConfig(max_new_tokens=new_tokens, runaway_repeats=0)
    ours(lm, texts[:2], SamplingConfig(max_new_tokens=2), seeds[:2], 2)  # warm-up
    ref_s, ref_tokens, ref_out = reference_way(lm, texts, config, seeds)
    rows: dict[str, Any] = {
        "params": params,
        "weight_gb": round(weight_bytes / 1e9, 3),
        "prompt_tokens": [len(lm.encode(t)) for t in texts],
        "new_tokens_per_prompt": new_tokens,
        "reference_batch1": {
            "seconds": round(ref_s, 3),
            "tokens": ref_tokens,
            "tokens_per_s": round(ref_tokens / ref_s, 2),
        },
    }
    for batch in batches:
        secs, tokens, out = ours(lm, texts, config, seeds, batch)
        rows[f"ours_batch{batch}"] = {
            "seconds": round(secs, 3),
            "tokens": tokens,
            "tokens_per_s": round(tokens / secs, 2),
            "speedup_vs_reference": round(ref_s / secs * tokens / max(ref_tokens, 1), 2),
            "same_tokens_as_reference": out == ref_out,
            # 2 FLOPs per parameter per generated token (decode; prefill excluded: a lower bound)
            "gflops_decode": round(2 * params * tokens / secs / 1e9, 1),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="tiny,1b", help="comma list of tiny, 1b, 7b (7b: GPU only)"
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batches", default="1,4,8", help="batch sizes for ours")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generate.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count() or 1)
    from models.tiny import write_tiny_checkpoints

    ckpt = ROOT / "benchmarks" / ".data" / "generate-checkpoints"
    tok_dir = ckpt / "spiritlm_model" / "spirit-lm-expressive-7b"
    if not (tok_dir / "tokenizer.json").is_file():
        write_tiny_checkpoints(ckpt)
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "dtype": "bfloat16" if device.type == "cuda" else "float32",
        },
        "command": "python benchmarks/generate_bench.py " + " ".join(sys.argv[1:]),
        "limits": limits(device),
        "sizes": {},
    }
    batches = [int(b) for b in args.batches.split(",")]
    for size in args.sizes.split(","):
        if size == "7b" and device.type != "cuda":
            print("skipping 7b: no GPU")
            continue
        print(f"size {size} ...", flush=True)
        row = bench_size(size, args.prompts, args.new_tokens, batches, tok_dir, device)
        row["decode_limit_tokens_per_s_batch1"] = round(
            report["limits"]["copy_gbps"] / row["weight_gb"], 2
        )
        report["sizes"][size] = row
        print(json.dumps(row, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
