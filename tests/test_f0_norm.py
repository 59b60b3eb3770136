"""Speaker-level F0 normalisation: the stats file formats, pooling, and the flow with its caching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, speech_clip
from prefect.logging import disable_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import TokenizeParams
from flows.units import tokenize_flow
from models.errors import CheckpointError
from models.extract import speaker_f0_means
from models.pitch import load_speaker_stats
from models.speech_tokenizer import SpeechTokenizer
from schemas.tables import UNITS
from storage.audio import load_audio_16k
from storage.layout import RunLayout
from storage.parquet import read_table
from tasks.f0_stats import plan_f0_stats

CKPT = FIXTURES / "reference-tiny" / "checkpoints"


@pytest.fixture(scope="module")
def tokenizer() -> SpeechTokenizer:
    return SpeechTokenizer.from_checkpoint_dir(CKPT, "expressive", with_vocoder=False)


def test_the_utterance_mean_given_explicitly_changes_nothing(tokenizer: SpeechTokenizer) -> None:
    wav = speech_clip(4.0, 0)
    assert tokenizer.pitch is not None
    total, frames = tokenizer.pitch.voiced_f0(torch.from_numpy(wav))
    own = tokenizer.encode_units(wav)
    assert tokenizer.encode_units(wav, f0_mean=total / frames) == own
    shifted = tokenizer.encode_units(wav, f0_mean=total / frames + 60.0)
    assert shifted["pitch"] != own["pitch"]  # the mean is really subtracted
    assert (shifted["hubert"], shifted["style"]) == (own["hubert"], own["style"])


def test_stats_files_in_the_reference_layout_and_json(tmp_path: Path) -> None:
    pt = tmp_path / "stats.pt"
    torch.save({"spk1": {"f0_mean": torch.tensor(121.5), "f0_std": torch.tensor(20.0)}}, pt)
    assert load_speaker_stats(pt) == {"spk1": pytest.approx(121.5)}
    js = tmp_path / "stats.json"
    js.write_text(json.dumps({"a": {"f0_mean": 200.0, "recordings": 3}, "b": 99.0}))
    assert load_speaker_stats(js) == {"a": 200.0, "b": 99.0}
    for name, content, needle in [
        ("list.json", "[1, 2]", "mapping"),
        ("nomean.json", '{"a": {"f0_std": 3}}', "'a' has no numeric f0_mean"),
        ("range.json", '{"a": 5000}', "outside"),
        ("broken.json", "{", "not valid JSON"),
    ]:
        (tmp_path / name).write_text(content)
        with pytest.raises(CheckpointError, match=needle) as info:
            load_speaker_stats(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "code.pt").write_bytes(b"\x80\x04cos\nsystem\n.")  # a pickle that would run code
    with pytest.raises(CheckpointError, match="code.pt"):
        load_speaker_stats(tmp_path / "code.pt")


def test_speaker_means_pool_voiced_frames_not_recordings() -> None:
    rows = [
        {"speaker": "a", "voiced_sum": 1000.0, "voiced_frames": 10},  # 100 Hz over 10 frames
        {"speaker": "a", "voiced_sum": 6000.0, "voiced_frames": 30},  # 200 Hz over 30 frames
        {"speaker": "b", "voiced_sum": 0.0, "voiced_frames": 0},  # never voiced: left out
    ]
    assert speaker_f0_means(rows) == {"a": {"f0_mean": 175.0, "voiced_frames": 40, "recordings": 2}}


def _manifest(root: Path, rows: list[tuple[str, str | None, np.ndarray]]) -> Path:
    lines = []
    for rid, speaker, wav in rows:
        if not (root / f"{rid}.wav").exists():  # float WAVs carry a write time: keep the bytes
            sf.write(root / f"{rid}.wav", wav, 16_000, subtype="FLOAT")
        row: dict[str, Any] = {"id": rid, "path": f"{rid}.wav"}
        if speaker:
            row["speaker"] = speaker
        lines.append(json.dumps(row))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _tokenize(out: Path, manifest: Path, **kw: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"variant": "expressive", "f0_norm": "speaker", **kw}
    params = TokenizeParams(
        source=str(manifest), out=str(out), checkpoints=str(CKPT), units_shard_size=1, **settings
    )
    flow = tokenize_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    return flow(params)["units"]  # type: ignore[no-any-return]


def test_tokenize_with_speaker_means_caches_and_reextracts_only_the_changed_speaker(
    tmp_path: Path, tokenizer: SpeechTokenizer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        ("a1", "A", speech_clip(3.0, 0)),
        ("a2", "A", speech_clip(2.5, 9000) * 0.5),
        ("b1", "B", speech_clip(3.5, 30000)),
        ("loner", None, speech_clip(2.0, 50000)),
    ]
    manifest = _manifest(data, rows)
    out = tmp_path / "out"
    first = _tokenize(out, manifest)
    assert first["extracted"] == 4
    stats = json.loads((out / "f0_speaker_stats.json").read_text())
    assert set(stats) == {"A", "B"} and stats["A"]["recordings"] == 2
    assert tokenizer.pitch is not None
    pooled = [tokenizer.pitch.voiced_f0(torch.from_numpy(w)) for _, s, w in rows if s == "A"]
    assert stats["A"]["f0_mean"] == pytest.approx(
        sum(t for t, _ in pooled) / sum(n for _, n in pooled)
    )
    units = read_table(str(out / "units"), UNITS).to_pandas().set_index("id")
    for rid, speaker, _ in rows:
        wav = load_audio_16k(str(data / f"{rid}.wav"))
        mean = round(stats[speaker]["f0_mean"], 6) if speaker else None
        expected = tokenizer.encode_units(wav, f0_mean=mean)
        assert list(units.loc[rid, "pitch"]) == expected["pitch"], rid
        assert (json.loads(units.loc[rid, "params"]).get("f0_mean")) == mean
    assert (
        list(units.loc["a2", "pitch"])
        != tokenizer.encode_units(load_audio_16k(str(data / "a2.wav")))["pitch"]
    )  # the speaker's mean, not a2's own, was used

    assert _tokenize(out, manifest)["extracted"] == 0  # nothing to redo
    layout = RunLayout.at(str(out))
    params = {"variant": "expressive", "checkpoints": str(CKPT), "f0_extractor": "fcpe"}
    with disable_run_logger():
        again = plan_f0_stats.fn(layout, layout.table("recordings"), {**params, "shard_size": 1})
    assert again.shards == [] and len(again.known) == 3  # every recording with a speaker cached

    rows.append(("a3", "A", speech_clip(3.0, 70000)))  # A's mean moves: only A is re-tokenized
    grown = _tokenize(out, _manifest(data, rows))
    assert grown["extracted"] == 3 and grown["reused_rows"] == 2
    assert json.loads((out / "f0_speaker_stats.json").read_text())["B"] == stats["B"]


def test_given_stats_file_is_used_and_bad_setups_fail_before_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    manifest = _manifest(data, [("a1", "A", speech_clip(2.0, 0))])
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"A": {"f0_mean": 150.0}}))
    _tokenize(tmp_path / "out", manifest, f0_speaker_stats=str(given))
    row = read_table(str(tmp_path / "out" / "units"), UNITS).to_pandas().iloc[0]
    assert json.loads(row["params"])["f0_mean"] == 150.0
    assert not (tmp_path / "out" / "f0_speaker_stats.json").exists()
    with pytest.raises(ValueError, match="needs --variant expressive"):
        _tokenize(tmp_path / "base", manifest, variant="base")
