"""The demo's chain on S3 (moto on 127.0.0.1) through the CLI; no credential in any output, log or artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES

from flows.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def test_demo_chain_on_s3_leaks_no_credentials(
    s3_server: dict[str, Any],
    s3_bucket: str,
    stsp_data: Path,
    tiny_checkpoints: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)  # type: ignore[arg-type]
    fs.put(
        str(FIXTURES / "reference-tiny" / "audio"),
        f"{s3_bucket}/data/reference-tiny/audio",
        recursive=True,
    )
    fs.put(str(FIXTURES / "arctic"), f"{s3_bucket}/data/arctic", recursive=True)
    fs.put(str(ROOT / "samples" / "demo.jsonl"), f"{s3_bucket}/in/demo.jsonl")
    fs.put(str(ROOT / "samples" / "text.jsonl"), f"{s3_bucket}/in/text.jsonl")
    fs.put(str(stsp_data), f"{s3_bucket}/stsp", recursive=True)
    endpoint = s3_server["client_kwargs"]["endpoint_url"]  # type: ignore[index]
    options = [
        "--storage-option",
        f"client_kwargs.endpoint_url={endpoint}",
        "--storage-option",
        "client_kwargs.region_name=us-east-1",
    ]
    run = f"s3://{s3_bucket}/runs/demo"
    ckpt = str(tiny_checkpoints)
    common = [*options, "--workers", "1"]
    assert (
        main(
            [
                "tokenize",
                f"s3://{s3_bucket}/in/demo.jsonl",
                "--data-root",
                f"s3://{s3_bucket}/data",
                "--checkpoints",
                ckpt,
                "--out",
                run,
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "build-corpus",
                "--units",
                run,
                "--text",
                f"s3://{s3_bucket}/in/text.jsonl",
                "--checkpoints",
                ckpt,
                "--weights",
                "0,1,1",
                "--text-span",
                "2-4",
                "--speech-span",
                "2-3",
                "--out",
                run,
                *common,
            ]
        )
        == 0
    )
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
