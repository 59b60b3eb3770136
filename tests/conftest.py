"""Shared fixtures: hermetic Prefect settings, one real Prefect server, moto S3, audio factories."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="spiritflow-prefect-")
# Must be set before prefect is imported anywhere.
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_LOCAL_STORAGE_PATH": os.path.join(_PREFECT_HOME, "storage"),
        "SPIRITFLOW_CACHE_DIR": os.path.join(_PREFECT_HOME, "spiritflow-cache"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "GX_ANALYTICS_ENABLED": "false",
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-value",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
)
os.environ.pop("PREFECT_API_URL", None)

import logging  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_AUDIO = FIXTURES / "reference-tiny" / "audio"


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """One real Prefect API server for the whole session (what the CLI starts per run)."""
    from flows.runtime import prefect_api

    with prefect_api() as url:
        yield url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, object]]:
    """moto's S3 server on loopback; yields fsspec storage options that reach it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: dict[str, object], request: pytest.FixtureRequest) -> Iterator[str]:
    import boto3
    import s3fs

    client_kwargs: dict[str, str] = s3_server["client_kwargs"]  # type: ignore[assignment]
    name = "sf-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client(
        "s3", endpoint_url=client_kwargs["endpoint_url"], region_name="us-east-1"
    ).create_bucket(Bucket=name)
    yield name
    s3fs.S3FileSystem(**s3_server).rm(name, recursive=True)  # type: ignore[arg-type]
    s3fs.S3FileSystem.clear_instance_cache()


def tone(
    seconds: float, rate: int = 16_000, freq: float = 220.0, amp: float = 0.5, channels: int = 1
) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def speech_clip(seconds: float, shift: int = 0) -> np.ndarray:
    """Real LibriSpeech speech (16 kHz), rotated by ``shift`` samples so clips differ in content."""
    speech, _ = sf.read(REFERENCE_AUDIO / "librispeech_7143-88743-0029.flac", dtype="float32")
    return np.roll(speech, shift)[: int(16_000 * seconds)]


WriteAudio = Callable[..., Path]


@pytest.fixture
def write_audio(tmp_path: Path) -> WriteAudio:
    """write_audio("a/b.wav", seconds=1.0, rate=16000, channels=1, data=None, **sf_kwargs) -> path"""

    def _write(
        rel: str,
        seconds: float = 1.0,
        rate: int = 16_000,
        channels: int = 1,
        data: np.ndarray | None = None,
        **kwargs: object,
    ) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = tone(seconds, rate, channels=channels) if data is None else data
        sf.write(str(path), samples, rate, **kwargs)  # type: ignore[arg-type]
        return path

    return _write


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The complete tiny random checkpoint set (speech tokenizer, vocoders, LMs, classifiers)."""
    from models.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny-checkpoints"))


@pytest.fixture(scope="session")
def stsp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic STSP set (eSpeak NG speech) in the released layout."""
    from storage.stsp_synthetic import write_synthetic_stsp

    return write_synthetic_stsp(tmp_path_factory.mktemp("stsp-data"))
