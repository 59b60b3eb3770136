"""The demo's chain on S3 (moto on 127.0.0.1) through the CLI; no credential in any output, log or artifact."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES
from s3_faults import FaultyS3, FaultyS3Proxy, Rule

from flows.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _upload_demo_inputs(s3_server: dict[str, Any], bucket: str) -> Any:
    """The demo's audio, manifest and text source under s3://BUCKET/{data,in}; the filesystem."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)  # type: ignore[arg-type]
    audio = FIXTURES / "reference-tiny" / "audio"
    fs.put(str(audio), f"{bucket}/data/reference-tiny/audio", recursive=True)
    fs.put(str(FIXTURES / "arctic"), f"{bucket}/data/arctic", recursive=True)
    fs.put(str(ROOT / "samples" / "demo.jsonl"), f"{bucket}/in/demo.jsonl")
    fs.put(str(ROOT / "samples" / "text.jsonl"), f"{bucket}/in/text.jsonl")
    return fs


def _endpoint(url: str) -> list[str]:
    """CLI storage options that reach an S3 endpoint on loopback."""
    options = [f"client_kwargs.endpoint_url={url}", "client_kwargs.region_name=us-east-1"]
    return [arg for option in options for arg in ("--storage-option", option)]


def _demo_chain(bucket: str, run: str, ckpt: str) -> tuple[list[str], list[str]]:
    """The demo's `tokenize` and `build-corpus` command lines on S3 (storage options appended by the caller)."""
    tokenize = ["tokenize", f"s3://{bucket}/in/demo.jsonl", "--data-root", f"s3://{bucket}/data"]
    corpus = ["build-corpus", "--units", run, "--text", f"s3://{bucket}/in/text.jsonl"]
    corpus += ["--weights", "0,1,1", "--text-span", "2-4", "--speech-span", "2-3"]
    return (
        [*tokenize, "--checkpoints", ckpt, "--out", run],
        [*corpus, "--checkpoints", ckpt, "--out", run],
    )


def test_demo_chain_on_s3_leaks_no_credentials(
    s3_server: dict[str, Any],
    s3_bucket: str,
    stsp_data: Path,
    tiny_checkpoints: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fs = _upload_demo_inputs(s3_server, s3_bucket)
    fs.put(str(stsp_data), f"{s3_bucket}/stsp", recursive=True)
    run = f"s3://{s3_bucket}/runs/demo"
    ckpt = str(tiny_checkpoints)
    common = [*_endpoint(s3_server["client_kwargs"]["endpoint_url"]), "--workers", "1"]  # type: ignore[index]
    tokenize, corpus = _demo_chain(s3_bucket, run, ckpt)
    assert main([*tokenize, *common]) == 0
    assert main([*corpus, *common]) == 0
    model = str(tiny_checkpoints / "spiritlm_model" / "spirit-lm-expressive-7b")
    assert (
        main(
            [
                "stsp",
                "--data-root",
                f"s3://{s3_bucket}/stsp",
                "--model",
                model,
                "--checkpoints",
                ckpt,
                "--directions",
                "s2t,t2s",
                "--seeds",
                "1",
                "--max-new-speech",
                "30",
                "--out",
                f"{run}/stsp",
                *common,
            ]
        )
        == 0
    )

    written = fs.find(f"{s3_bucket}/runs")
    for table in (
        "recordings",
        "units",
        "corpus",
        "stsp/generations",
        "stsp/scores",
        "stsp/metrics",
    ):
        assert fs.exists(f"{s3_bucket}/runs/demo/{table}/_table.json"), table
    assert any(p.endswith("stsp/reports/stsp.html") for p in written)
    assert any("/stsp/audio/" in p and p.endswith(".wav") for p in written)  # vocoded speech on S3
    generations = json.loads(fs.cat(f"{s3_bucket}/runs/demo/stsp/generations/_table.json"))
    assert generations["rows"] == 6 + 12

    secrets = [os.environ[k] for k in SECRETS]
    texts = [
        fs.cat(p).decode("utf-8", "replace")
        for p in written
        if p.endswith((".json", ".jsonl", ".md", ".html"))
    ]
    output = capfd.readouterr()
    texts += [output.out, output.err, caplog.text]
    texts += _artifact_texts()
    assert len(texts) > 10
    for text in texts:
        for secret in secrets:
            assert secret not in text


def _artifact_texts() -> list[str]:
    """Every Prefect artifact's key, description and data, as the UI would show them."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(limit=200)
    assert artifacts
    return [json.dumps([a.key, a.description, a.data], default=str) for a in artifacts]


def test_injected_s3_faults_are_retried_and_change_nothing(
    s3_server: dict[str, Any], s3_bucket: str, tiny_checkpoints: Path
) -> None:
    """botocore's retries off: an InternalError (which s3fs does not retry either) reaches the task,
    which retries; dropped connections are retried by s3fs. The results are the faultless ones."""
    from models.speech_tokenizer import SpeechTokenizer
    from storage.audio import load_audio_16k
    from storage.parquet import read_table

    _upload_demo_inputs(s3_server, s3_bucket)
    faults = FaultyS3(
        upstream=s3_server["client_kwargs"]["endpoint_url"],  # type: ignore[index]
        rules=[
            Rule("GET", re.compile(r"\.(wav|flac)$"), "reset"),  # audio reads: s3fs retries
            Rule("PUT", re.compile(r"/(recordings|units|corpus)/\w+/part-"), "InternalError"),
            Rule("GET", re.compile(r"/(recordings|units)/_table\.json$"), "InternalError"),
        ],
    )
    run = f"s3://{s3_bucket}/runs/faulty"
    ckpt = str(tiny_checkpoints)
    with FaultyS3Proxy(faults) as proxy:
        common = [*_endpoint(proxy.url), "--workers", "1"]
        common += ["--storage-option", "config_kwargs.retries.total_max_attempts=1"]
        tokenize, corpus = _demo_chain(s3_bucket, run, ckpt)
        assert main([*tokenize, "--shard-size", "1", *common]) == 0
        assert main([*corpus, *common]) == 0

    assert faults.injected[("GET", "reset")] >= 3
    assert faults.injected[("PUT", "InternalError")] >= 4
    assert faults.injected[("GET", "InternalError")] >= 2
    units = read_table(f"{run}/units", storage_options=s3_server).to_pandas().set_index("id")
    tokenizer = SpeechTokenizer.from_checkpoint_dir(
        tiny_checkpoints, "expressive", with_vocoder=False
    )
    recordings = read_table(f"{run}/recordings", storage_options=s3_server).to_pandas()
    assert sorted(units.index) == sorted(recordings["id"]) and len(units) >= 3  # each exactly once
    for rec in recordings.itertuples():
        expected = tokenizer.encode_units(load_audio_16k(rec.uri, s3_server))
        assert list(units.loc[rec.id, "hubert"]) == expected["hubert"], rec.id
        assert list(units.loc[rec.id, "pitch"]) == expected["pitch"], rec.id
    assert len(read_table(f"{run}/corpus", storage_options=s3_server).to_pandas()) > 0
