"""The ingest flow end to end: every reject reason, reuse on rerun, resume after SIGKILL, retries, S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, REFERENCE_AUDIO, WriteAudio, tone
from prefect.task_runners import ThreadPoolTaskRunner

import storage.recordings as recordings_mod
from flows.ingest import ingest_flow
from flows.params import IngestParams
from flows.runtime import ClusterOptions, task_runner
from storage.parquet import read_table
from tasks.ingest import IngestSummary


def _run(params: IngestParams, runner: Any = None) -> IngestSummary:
    runner = runner or ThreadPoolTaskRunner(max_workers=2)
    return ingest_flow.with_options(task_runner=runner)(params)


def _table(out: Path | str, name: str, **kw: Any) -> pd.DataFrame:
    return read_table(f"{out}/{name}", **kw).to_pandas()


def _mixed_corpus(tmp_path: Path, write_audio: WriteAudio) -> Path:
    """A manifest with good files of several kinds and one file for every reject reason."""
    root = tmp_path / "data"
    write_audio("data/good/mono16k.wav", seconds=1.0)
    write_audio("data/good/stereo44k.flac", seconds=1.2, rate=44_100, channels=2)
    write_audio("data/good/ogg.ogg", seconds=0.7, rate=24_000)
    write_audio("data/good/same_bytes.wav", seconds=1.0)  # identical content to mono16k.wav
    (root / "good" / "speech.flac").write_bytes(
        (REFERENCE_AUDIO / "librispeech_7143-88743-0029.flac").read_bytes()
    )
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "empty.wav").write_bytes(b"")
    (root / "bad" / "text.wav").write_text("not audio at all\n" * 10)
    cut = write_audio("data/bad/cut.wav", seconds=2.0)
    cut.write_bytes(cut.read_bytes()[:20_000])
    write_audio("data/bad/short.wav", seconds=0.05)
    nan = tone(1.0)
    nan[100] = np.inf
    write_audio("data/bad/inf.wav", data=nan, subtype="FLOAT")
    write_audio("data/bad/words.wav", seconds=1.0)
    rows = [
        {"id": "mono", "path": "good/mono16k.wav", "text": "a tone", "emotion": "happy"},
        {"id": "stereo", "path": "good/stereo44k.flac", "sentiment": "negative"},
        {"id": "ogg", "path": "good/ogg.ogg", "words": [{"word": "hi", "start": 0.1, "end": 0.6}]},
        {"id": "same", "path": "good/same_bytes.wav"},
        {"id": "speech", "path": "good/speech.flac", "speaker": "7143"},
        {"id": "empty", "path": "bad/empty.wav"},
        {"id": "text", "path": "bad/text.wav"},
        {"id": "cut", "path": "bad/cut.wav"},
        {"id": "short", "path": "bad/short.wav"},
        {"id": "inf", "path": "bad/inf.wav"},
        {
            "id": "late_words",
            "path": "bad/words.wav",
            "words": [{"word": "x", "start": 0.5, "end": 3.0}],
        },
        {"id": "missing", "path": "bad/not-there.wav"},
        {"id": "escape", "path": "../outside.wav"},
        {"id": "bad_sentiment", "path": "good/mono16k.wav", "sentiment": "ecstatic"},
    ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


EXPECTED_REASONS = {
    "empty": "empty",
    "text": "not_audio",
    "cut": "corrupt",
    "short": "too_short",
    "inf": "non_finite",
    "late_words": "bad_words",
    "missing": "missing",
    "escape": "outside_root",
    "bad_sentiment": "bad_row",
}


@pytest.mark.slow
def test_flow_on_a_real_local_cluster(tmp_path: Path, write_audio: WriteAudio) -> None:
    """The one flow test on LocalCluster(processes=True): every reason, duplicates, reuse on rerun."""
    manifest = _mixed_corpus(tmp_path, write_audio)
    params = IngestParams(source=str(manifest), out=str(tmp_path / "out"), shard_size=2)
    summary = _run(params, task_runner(ClusterOptions(workers=2)))
    assert summary.good == 5 and summary.rejected == len(EXPECTED_REASONS)
    rec = _table(tmp_path / "out", "recordings").set_index("id")
    assert set(rec.index) == {"mono", "stereo", "ogg", "same", "speech"}
    assert rec.loc["stereo", "channels"] == 2 and rec.loc["stereo", "sample_rate"] == 44_100
    assert rec.loc["stereo", "num_samples_16k"] == 19_200
    assert rec.loc["mono", "sentiment"] == "positive" and rec.loc["mono", "text"] == "a tone"
    assert rec.loc["ogg", "words"][0]["word"] == "hi"
    rej = _table(tmp_path / "out", "rejects").set_index("id")
    assert rej["reason"].to_dict() == EXPECTED_REASONS
    assert rej["error"].str.len().min() > 10
    dup = _table(tmp_path / "out", "duplicates")
    assert dup[["id", "duplicate_of"]].values.tolist() == [["same", "mono"]]
    assert summary.hours == pytest.approx(rec["duration_s"].sum() / 3600)
    report = json.loads((tmp_path / "out" / "reports" / "ingest-summary.json").read_text())
    assert report["reasons"] == dict(sorted(pd.Series(EXPECTED_REASONS).value_counts().items()))

    before = _table(tmp_path / "out", "recordings").sort_values("id").reset_index(drop=True)
    again = _run(params, task_runner(ClusterOptions(workers=2)))
    assert again.shards_computed == 0 and again.shards_reused == summary.shards > 1
    pd.testing.assert_frame_equal(
        before, _table(tmp_path / "out", "recordings").sort_values("id").reset_index(drop=True)
    )

    # The units stage on the same cluster kind: models load in the worker processes, tasks serialise.
    from flows.params import UnitsParams
    from flows.units import units_flow

    units = units_flow.with_options(task_runner=task_runner(ClusterOptions(workers=2)))(
        UnitsParams(
            out=str(tmp_path / "out"),
            checkpoints=str(FIXTURES / "reference-tiny" / "checkpoints"),
            variant="expressive",
            shard_size=2,
        )
    )
    assert units.rows == 5 and units.extracted == 5 and units.shards_computed >= 2
    table = _table(tmp_path / "out", "units").set_index("id")
    assert (table["n_hubert"] > 0).all() and (table["n_pitch"] > 0).all()


def test_rerun_after_partial_loss_recomputes_only_missing_shards(
    tmp_path: Path, write_audio: WriteAudio
) -> None:
    for i in range(12):
        write_audio(f"f/utt{i:02d}.wav", seconds=0.2 + 0.05 * i)
    params = IngestParams(source=str(tmp_path / "f"), out=str(tmp_path / "out"), shard_size=3)
    first = _run(params)
    before = _table(tmp_path / "out", "recordings").sort_values("id").reset_index(drop=True)
    shard_dirs = sorted(p for p in (tmp_path / "out" / "recordings").iterdir() if p.is_dir())
    for lost in shard_dirs[:2]:
        for f in lost.iterdir():
            f.unlink()
        (lost / ".part-00000.parquet.tmp-crashed").write_bytes(b"half")  # a crash mid-write
    (tmp_path / "out" / "recordings" / "_table.json").unlink()
    second = _run(params)
    assert second.shards_computed == 2 and second.shards_reused == first.shards - 2
    after = _table(tmp_path / "out", "recordings").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_sigkill_mid_run_then_resume(tmp_path: Path, write_audio: WriteAudio) -> None:
    """Kill the whole CLI process group mid-run; a rerun computes only the missing shards."""
    n = 40
    for i in range(n):
        write_audio(f"f/utt{i:03d}.wav", seconds=0.5)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "ingest",
        str(tmp_path / "f"),
        "--out",
        str(out),
        "--shard-size",
        "1",
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[1],
    )
    deadline = time.monotonic() + 120
    done: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        done = (
            list((out / "recordings").glob("*/part-*.parquet"))
            if (out / "recordings").exists()
            else []
        )
        if len(done) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    finished = len(list((out / "recordings").glob("*/part-*.parquet")))
    assert 3 <= finished < n, "the run should have been killed part-way"
    assert not (out / "recordings" / "_table.json").exists()
    resumed = _run(IngestParams(source=str(tmp_path / "f"), out=str(out), shard_size=1))
    assert resumed.shards_computed == n - finished and resumed.shards_reused == finished
    rec = _table(out, "recordings")
    assert sorted(rec["id"]) == [f"utt{i:03d}" for i in range(n)]  # each exactly once
    clean = _run(
        IngestParams(source=str(tmp_path / "f"), out=str(tmp_path / "clean"), shard_size=1)
    )
    assert clean.good == n
    cols = ["id", "sha256", "frames", "rms", "peak", "silence_share"]
    pd.testing.assert_frame_equal(
        rec[cols].sort_values("id").reset_index(drop=True),
        _table(tmp_path / "clean", "recordings")[cols].sort_values("id").reset_index(drop=True),
    )


def test_transient_errors_are_retried(
    tmp_path: Path, write_audio: WriteAudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_audio("f/a.wav")
    write_audio("f/b.wav")
    real = recordings_mod.inspect_audio
    calls: list[str] = []

    def flaky(uri: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(uri)
        if uri.endswith("a.wav") and calls.count(uri) == 1:
            raise ConnectionError("connection reset by peer (injected)")
        return real(uri, *args, **kwargs)

    monkeypatch.setattr(recordings_mod, "inspect_audio", flaky)
    summary = _run(
        IngestParams(source=str(tmp_path / "f"), out=str(tmp_path / "out"), shard_size=100)
    )
    assert summary.good == 2 and summary.rejected == 0
    assert sum(c.endswith("a.wav") for c in calls) == 2


def test_bugs_are_not_retried_and_nothing_is_committed(
    tmp_path: Path, write_audio: WriteAudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_audio("f/a.wav")
    calls: list[str] = []

    def broken(uri: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(uri)
        raise KeyError("a bug, not an I/O error")

    monkeypatch.setattr(recordings_mod, "inspect_audio", broken)
    with pytest.raises(KeyError):
        _run(IngestParams(source=str(tmp_path / "f"), out=str(tmp_path / "out")))
    assert len(calls) == 1
    assert not (tmp_path / "out" / "recordings" / "_table.json").exists()


def test_s3_source_and_output_via_moto(
    tmp_path: Path, write_audio: WriteAudio, s3_server: dict[str, Any], s3_bucket: str
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    for name in ("a", "b"):
        fs.put(
            str(write_audio(f"local/{name}.wav", seconds=0.5)), f"{s3_bucket}/in/wavs/{name}.wav"
        )
    fs.pipe(f"{s3_bucket}/in/wavs/broken.wav", b"RIFF....WAVEjunk")
    rows = [
        {"id": "a", "wav_path": "wavs/a.wav", "asr": "hello"},
        {"id": "b", "wav_path": "wavs/b.wav"},
        {"id": "broken", "wav_path": "wavs/broken.wav"},
        {"id": "gone", "wav_path": "wavs/gone.wav"},
    ]
    fs.pipe(f"{s3_bucket}/in/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    out = f"s3://{s3_bucket}/runs/one"
    params = IngestParams(
        source=f"s3://{s3_bucket}/in/manifest.jsonl", out=out, storage_options=s3_server
    )
    summary = _run(params)
    assert summary.good == 2 and summary.reasons == {"corrupt": 1, "missing": 1}
    rec = read_table(f"{out}/recordings", storage_options=s3_server).to_pandas()
    assert sorted(rec["uri"]) == [
        f"s3://{s3_bucket}/in/wavs/a.wav",
        f"s3://{s3_bucket}/in/wavs/b.wav",
    ]
    assert _run(IngestParams(source=str(tmp_path / "local"), out=str(tmp_path / "out"))).good == 2
    assert set(rec["sha256"]) == set(_table(tmp_path / "out", "recordings")["sha256"])
    assert (
        "testing-secret-value"
        not in fs.cat(f"{s3_bucket}/runs/one/reports/ingest-summary.json").decode()
    )
