"""Memory benchmark: a 2-hour recording and a 10,000-file folder through `spiritflow tokenize`.

Run: ``.venv/bin/python benchmarks/memory_bench.py [--hours 2] [--files 10000]``
(writes benchmarks/results/memory.json). In one run, with the tiny checkpoints (base variant, so the
numbers are about audio and bookkeeping, not model size):
  reference_long   the reference's way for one file: decode it whole, resample the whole, then
                   tokenize (peak RSS of that process)
  flow_short       `spiritflow tokenize` on a folder with one 100 s recording (1 worker)
  flow_long        the same on one recording of ``--hours`` (44.1 kHz stereo, 16-bit WAV)
  flow_1000 / flow_N  `spiritflow tokenize` on folders of 1,000 and ``--files`` short clips (2 workers)
For each CLI run: wall time and the peak RSS of each process (CLI/flow, Prefect server, each Dask
worker), sampled every 50 ms. Bounded memory means flow_long ≈ flow_short and flow_N ≈ flow_1000.
The machine's limit is its RAM (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scale_bench import noisy_tone  # noqa: E402  (this folder is on sys.path when run as a script)

DATA = ROOT / "benchmarks" / ".data"
PY = sys.executable


def long_recording(seconds: int, rate: int = 44_100) -> Path:
    folder = DATA / f"long-{seconds}s"
    path = folder / f"long_{seconds}s.wav"
    if path.exists() and sf.info(str(path)).frames == seconds * rate:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seconds)
    t = np.arange(rate * 10) / rate
    with sf.SoundFile(str(path), "w", rate, 2, "PCM_16") as handle:
        for k in range(seconds // 10):  # 10 s at a time: this script must not hold it either
            tone = 0.2 * np.sin(2 * np.pi * (110 + k % 200) * t)
            block = tone[:, None] + 0.05 * rng.standard_normal((len(t), 2))
            handle.write(block.astype(np.float32))
    return folder


def short_clips(n: int, seed: int = 3) -> Path:
    folder = DATA / f"clips-{n}"
    if (folder / ".done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        wave = noisy_tone(rng, rng.uniform(0.5, 1.5), 16_000)
        sub = folder / f"d{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"clip{i:05d}.wav", wave, 16_000)
    (folder / ".done").write_text("ok")
    return folder


def _role(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "flow"
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if ("prefect" in cmd and "server" in cmd) or "uvicorn" in cmd:
        return "prefect_server"
    if "multiprocessing" in cmd or "spawn_main" in cmd or "distributed" in cmd:
        return "worker"
    return "other"


def tokenize_peaks(source: Path, out: Path, checkpoints: Path, workers: int) -> dict[str, object]:
    """Run the CLI; sample every process in its tree; peak RSS (MB) per role and in total."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [PY, "-m", "flows.cli", "tokenize", str(source), "--out", str(out)]
    cmd += ["--checkpoints", str(checkpoints), "--variant", "base", "--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    root = psutil.Process(proc.pid)
    peaks: dict[int, tuple[str, float]] = {}
    total_peak = 0.0
    while proc.poll() is None:
        total = 0.0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                rss = p.memory_info().rss / 2**20
            except psutil.Error:
                continue
            total += rss
            role = peaks.get(p.pid, (_role(p, proc.pid), 0.0))[0]
            peaks[p.pid] = (role, max(rss, peaks.get(p.pid, (role, 0.0))[1]))
        total_peak = max(total_peak, total)
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"tokenize failed ({proc.returncode}):\n{stderr[-3000:]}")
    units = json.loads((out / "units" / "_table.json").read_text())
    by_role: dict[str, float] = {}
    for role, mb in peaks.values():
        by_role[role] = max(by_role.get(role, 0.0), mb)
    return {
        "seconds": round(elapsed, 1),
        "units_rows": units.get("rows"),
        "peak_rss_mb": {k: round(v) for k, v in sorted(by_role.items())},
        "peak_rss_tree_mb": round(total_peak),
    }


REFERENCE_WAY = """
import resource, sys, torch, torchaudio.functional as taf, soundfile as sf
from models.speech_tokenizer import SpeechTokenizer
tok = SpeechTokenizer.from_checkpoint_dir(sys.argv[1], "base", with_vocoder=False)
data, rate = sf.read(sys.argv[2], dtype="float32", always_2d=True)  # the whole file
wav = taf.resample(torch.from_numpy(data.mean(axis=1)), rate, 16_000)
units = tok.encode_units(wav)
print(len(units["hubert"]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def reference_peak(checkpoints: Path, path: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [PY, "-c", REFERENCE_WAY, str(checkpoints), str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    n, peak = done.stdout.split()[-2:]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "hubert_units": int(n),
        "peak_rss_mb": round(float(peak)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "memory.json"))
    args = parser.parse_args()
    from models.tiny import write_tiny_checkpoints

    checkpoints = DATA / "tiny-checkpoints"
    if not (checkpoints / ".done").exists():
        write_tiny_checkpoints(checkpoints)
        (checkpoints / ".done").write_text("ok")
    seconds = int(args.hours * 3600) // 10 * 10
    long_dir, short_dir = long_recording(seconds), long_recording(100)
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}",
        "command": "python benchmarks/memory_bench.py " + " ".join(sys.argv[1:]),
        "long_recording": f"{seconds} s, 44.1 kHz stereo 16-bit WAV",
    }
    results["reference_long"] = reference_peak(checkpoints, next(long_dir.glob("*.wav")))
    results["flow_short"] = tokenize_peaks(short_dir, DATA / "mem-short", checkpoints, 1)
    results["flow_long"] = tokenize_peaks(long_dir, DATA / "mem-long", checkpoints, 1)
    for n in sorted({1000, args.files}):
        results[f"flow_{n}_files"] = tokenize_peaks(
            short_clips(n), DATA / f"mem-{n}", checkpoints, 2
        )
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
