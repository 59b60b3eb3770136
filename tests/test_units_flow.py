"""The units stage end to end: parity in the table, per-recording reuse, rejects, GE rules, decode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import FIXTURES, REFERENCE_AUDIO, speech_clip
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import DecodeParams, TokenizeParams
from flows.units import decode_flow, tokenize_flow
from schemas.errors import TableValidationError
from schemas.expectations import validate_frame
from schemas.tables import UNITS
from storage.parquet import read_table

CKPT = FIXTURES / "reference-tiny" / "checkpoints"
EXPECTED = json.loads((FIXTURES / "reference-tiny" / "expected.json").read_text())["files"]


def _run(flow: Any, params: Any) -> Any:
    return flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(params)


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    for name in EXPECTED:
        shutil.copy(REFERENCE_AUDIO / name, folder / name)
    return folder


def _units(out: Path) -> pd.DataFrame:
    return read_table(str(out / "units"), UNITS).to_pandas().set_index("id")


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_units_table_equals_the_reference(tmp_path: Path, variant: str) -> None:
    params = TokenizeParams(
        source=str(_corpus(tmp_path)),
        out=str(tmp_path / "out"),
        checkpoints=str(CKPT),
        variant=variant,
        units_shard_size=1,
    )  # type: ignore[arg-type]
    result = _run(tokenize_flow, params)
    assert result["ingest"]["good"] == 2 and result["ingest"]["reasons"] == {"too_short": 1}
    units = _units(tmp_path / "out")
    for name in ("glide_3s", "librispeech_7143-88743-0029"):
        ref = next(v for k, v in EXPECTED.items() if k.startswith(name))[f"{variant}_units"]
        row = units.loc[name]
        assert list(row["hubert"]) == [int(x) for x in ref["hubert"].split()]
        if variant == "expressive":
            assert list(row["pitch"]) == [int(x) for x in ref["pitch"].split()]
            assert list(row["style"]) == [int(x) for x in ref["style"].split()]
        else:
            assert row["pitch"] is None
        assert set(json.loads(row["checkpoints"])) >= {"hubert", "quantizer"}


def test_adding_files_extracts_only_them_and_removed_ones_leave(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    params = TokenizeParams(
        source=str(corpus),
        out=str(tmp_path / "out"),
        checkpoints=str(CKPT),
        variant="base",
        units_shard_size=1,
    )
    first = _run(tokenize_flow, params)["units"]
    assert first["extracted"] == 2
    wav, _ = sf.read(REFERENCE_AUDIO / "glide_3s.wav", dtype="float32")
    sf.write(corpus / "louder.wav", np.clip(wav * 1.5, -1, 1), 16_000)
    second = _run(tokenize_flow, params)["units"]
    assert second["extracted"] == 1 and second["reused_rows"] == 2 and second["rows"] == 3
    (corpus / "louder.wav").unlink()
    third = _run(tokenize_flow, params)["units"]
    assert third["extracted"] == 0 and third["rows"] == 2
    assert sorted(_units(tmp_path / "out").index) == ["glide_3s", "librispeech_7143-88743-0029"]
    other = _run(tokenize_flow, params.model_copy(update={"hubert_layer": 10}))["units"]
    assert other["extracted"] == 2  # another layer → other units → recomputed


def test_a_file_gone_after_ingest_is_rejected_not_fatal(tmp_path: Path) -> None:
    from flows.ingest import ingest_flow
    from flows.params import UnitsParams
    from flows.units import units_flow

    corpus = _corpus(tmp_path)
    out = tmp_path / "out"
    _run(ingest_flow, TokenizeParams(source=str(corpus), out=str(out)).ingest())
    (corpus / "glide_3s.wav").unlink()
    summary = _run(units_flow, UnitsParams(out=str(out), checkpoints=str(CKPT), variant="base"))
    assert summary.rows == 1 and summary.rejected == 1
    rejects = read_table(str(out / "unit_rejects")).to_pandas()
    assert rejects.loc[0, "reason"] == "missing" and rejects.loc[0, "stage"] == "units"


def _tokenize_expressive(tmp_path: Path) -> None:
    """The fixture corpus tokenized (expressive, fixture checkpoints) into tmp_path/out."""
    params = TokenizeParams(
        source=str(_corpus(tmp_path)),
        out=str(tmp_path / "out"),
        checkpoints=str(CKPT),
        variant="expressive",
    )
    _run(tokenize_flow, params)


def test_units_validation_catches_bad_rows(tmp_path: Path) -> None:
    _tokenize_expressive(tmp_path)
    good = read_table(str(tmp_path / "out" / "units"), UNITS).to_pandas()
    assert validate_frame(good, UNITS) == 2
    bad = good.copy()
    bad.at[0, "hubert"] = np.array([1, 2, 700], dtype=np.uint16)
    with pytest.raises(TableValidationError, match="hubert.max"):
        validate_frame(bad, UNITS)
    short = good.copy()
    short.at[1, "n_hubert"] = 3
    with pytest.raises(TableValidationError, match="hubert.gap_per_chunk"):
        validate_frame(short, UNITS)
    empty = good.copy()
    empty.at[0, "hubert"] = np.array([], dtype=np.uint16)
    empty.at[0, "n_hubert"] = 0
    with pytest.raises(TableValidationError, match="hubert.missing"):
        validate_frame(empty, UNITS)


def test_finalize_validates_in_batches_and_ids_across_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole units table is never loaded to validate it; a bad row in a late batch and an
    id repeated in two shards are still caught."""
    import tasks.common as common
    from storage.parquet import to_arrow, write_atomic

    _tokenize_expressive(tmp_path)
    good = read_table(str(tmp_path / "out" / "units"), UNITS).to_pandas()
    monkeypatch.setattr(common, "VALIDATE_ROWS", 1)
    batches: list[int] = []
    real = common.validate_frame
    monkeypatch.setattr(
        common, "validate_frame", lambda df, spec: batches.append(len(df)) or real(df, spec)
    )

    def part(name: str, frame: pd.DataFrame) -> str:
        url = str(tmp_path / "parts" / name / "part-00000.parquet")
        return write_atomic(to_arrow(frame.to_dict("records"), UNITS), url)

    parts = [part("a", good.iloc[[0]]), part("b", good.iloc[[1]])]
    index = common.validate_parts(parts, UNITS)
    assert batches == [1, 1] and index.column_names == ["id", "duration_s"] and index.num_rows == 2
    bad = good.iloc[[1]].copy()
    bad.at[bad.index[0], "hubert"] = np.array([1, 2, 700], dtype=np.uint16)
    with pytest.raises(TableValidationError, match="hubert.max"):
        common.validate_parts([parts[0], part("bad", bad)], UNITS)
    with pytest.raises(TableValidationError, match="more than one shard"):
        common.validate_parts([*parts, part("again", good.iloc[[0]])], UNITS)


def test_decode_writes_wavs_and_resumes(tmp_path: Path) -> None:
    _tokenize_expressive(tmp_path)
    decode = DecodeParams(
        units=str(tmp_path / "out" / "units"),
        out=str(tmp_path / "out"),
        checkpoints=str(CKPT),
        speaker=1,
    )
    result = _run(decode_flow, decode)
    assert result["written"] == 2
    wav, sr = sf.read(tmp_path / "out" / "audio" / "glide_3s.wav", dtype="float32")
    ref = np.load(FIXTURES / "reference-tiny" / "glide_3s.expressive_decode.npy")
    assert sr == 16_000 and len(wav) == len(ref) and float(np.abs(wav - ref).max()) < 1e-4
    again = _run(decode_flow, decode)
    assert again["written"] == 0 and again["kept"] == 2


def test_tokenize_with_source_and_output_on_s3(
    tmp_path: Path, s3_server: dict[str, Any], s3_bucket: str
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    for name in ("glide_3s.wav", "librispeech_7143-88743-0029.flac"):
        fs.put(str(REFERENCE_AUDIO / name), f"{s3_bucket}/in/{name}")
    out = f"s3://{s3_bucket}/runs/tok"
    params = TokenizeParams(
        source=f"s3://{s3_bucket}/in/",
        out=out,
        storage_options=s3_server,
        checkpoints=str(CKPT),
        variant="base",
    )
    result = _run(tokenize_flow, params)
    assert result["units"]["rows"] == 2
    units = read_table(f"{out}/units", UNITS, storage_options=s3_server).to_pandas().set_index("id")
    ref = EXPECTED["glide_3s.wav"]["base_units"]["hubert"]
    assert list(units.loc["glide_3s", "hubert"]) == [int(x) for x in ref.split()]
    again = _run(tokenize_flow, params)["units"]
    assert again["extracted"] == 0 and again["reused_rows"] == 2


@pytest.mark.slow
def test_a_worker_killed_mid_extraction_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL one Dask worker while shards extract: the flow finishes, every recording once."""
    import os
    import signal
    import threading
    import time

    from distributed import LocalCluster

    from flows.runtime import WORKER_MALLOC_ENV, ClusterOptions, task_runner, tune_worker_malloc

    folder = tmp_path / "audio"
    folder.mkdir()
    for k in range(16):  # distinct content per file (no duplicates), 3-9 s each
        sf.write(folder / f"clip{k:02d}.wav", speech_clip(3 + k % 7, 4000 * k), 16_000)
    params = TokenizeParams(
        source=str(folder),
        out=str(tmp_path / "out"),
        checkpoints=str(CKPT),
        variant="expressive",
        units_shard_size=2,
    )  # type: ignore[arg-type]
    tune_worker_malloc()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        worker_env = cluster.get_client().run(
            lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}
        )
        assert all(
            env == {k: str(v) for k, v in WORKER_MALLOC_ENV.items()} for env in worker_env.values()
        )
        killed: list[str] = []

        def kill_one_worker_while_it_extracts() -> None:
            deadline = time.monotonic() + 120
            units = tmp_path / "out" / "units"
            while time.monotonic() < deadline and not killed:
                if not list(units.glob("*/part-*.parquet")):  # extraction has not begun yet
                    time.sleep(0.05)
                    continue
                for ws in list(cluster.scheduler.workers.values()):
                    if ws.processing:  # a worker with an extraction task on it
                        os.kill(ws.pid, signal.SIGKILL)
                        killed.append(ws.address)
                        break
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_worker_while_it_extracts, daemon=True)
        killer.start()
        runner = task_runner(ClusterOptions(dask_address=cluster.scheduler_address))
        result = tokenize_flow.with_options(task_runner=runner)(params)
        killer.join(timeout=5)
    assert killed, "no worker was killed: the test did not exercise anything"
    assert result["units"]["rows"] == 16 and result["units"]["rejected"] == 0
    units = read_table(str(tmp_path / "out" / "units"), UNITS).to_pandas()
    assert sorted(units["id"]) == [f"clip{k:02d}" for k in range(16)]  # each exactly once
    assert (units["n_hubert"] > 0).all()


def test_tokenize_sigkilled_mid_extraction_resumes_with_the_missing_shards(tmp_path: Path) -> None:
    """Kill the whole CLI process group while units are extracted; the rerun extracts only the
    shards that had not landed, and its table equals an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "audio"
    folder.mkdir()
    n = 12
    for k in range(n):
        sf.write(folder / f"clip{k:02d}.wav", speech_clip(2 + k % 4, 3000 * k), 16_000)
    out = tmp_path / "out"
    args = ["--checkpoints", str(CKPT), "--variant", "expressive", "--units-shard-size", "1"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "tokenize",
            str(folder),
            "--out",
            str(out),
            *args,
            "--workers",
            "1",
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[1],
    )
    parts = out / "units"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.exists() and len(list(parts.glob("*/part-*.parquet"))) >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    landed = len(list(parts.glob("*/part-*.parquet")))
    assert 2 <= landed < n, "the run should have been killed during extraction"
    assert not (parts / "_table.json").exists()

    def params(where: Path) -> TokenizeParams:
        return TokenizeParams(
            source=str(folder),
            out=str(where),
            checkpoints=str(CKPT),
            variant="expressive",
            units_shard_size=1,
        )  # type: ignore[arg-type]

    resumed = _run(tokenize_flow, params(out))["units"]
    assert resumed["shards_computed"] == n - landed and resumed["shards_reused"] == landed
    assert resumed["extracted"] == n - landed and resumed["rows"] == n
    clean = _run(tokenize_flow, params(tmp_path / "clean"))["units"]
    assert clean["extracted"] == n
    cols = ["sha256", "num_samples_16k", "hubert", "pitch", "style", "checkpoints", "params"]
    got, want = _units(out)[cols].sort_index(), _units(tmp_path / "clean")[cols].sort_index()
    assert list(got.index) == [f"clip{k:02d}" for k in range(n)]  # each exactly once
    pd.testing.assert_frame_equal(got, want)
