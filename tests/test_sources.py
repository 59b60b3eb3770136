"""Planning sources: folders, globs, manifests (STSP layout), path confinement and bad rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import WriteAudio

from schemas.errors import ManifestError
from storage.sources import plan_source


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_folder_is_walked_recursively_with_ids_from_paths(
    tmp_path: Path, write_audio: WriteAudio
) -> None:
    write_audio("corpus/spk1/a.wav")
    write_audio("corpus/spk2/b.flac")
    write_audio("corpus/.hidden/c.wav")
    (tmp_path / "corpus" / "README.txt").write_text("notes")
    plan = plan_source(str(tmp_path / "corpus"))
    assert [i.id for i in plan.items] == ["spk1/a", "spk2/b"]
    assert plan.ignored == 1 and not plan.rejects
    assert all(os.path.isabs(i.uri) for i in plan.items)


def test_glob_source(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("g/x1.wav")
    write_audio("g/x2.wav")
    write_audio("g/y.wav")
    plan = plan_source(str(tmp_path / "g" / "x*.wav"))
    assert [i.id for i in plan.items] == ["x1", "x2"]


def test_stsp_manifest_loads_as_is(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("stsp/wavs/emov/0001.wav")
    write_audio("stsp/wavs/emov/0002.wav")
    rows = [
        {
            "id": "emov_1",
            "wav_path": "wavs/emov/0001.wav",
            "asr": "i am so happy",
            "emotion": "amused",
            "split": "test",
            "speaker": "bea",
        },
        {
            "id": "emov_2",
            "wav_path": "wavs/emov/0002.wav",
            "asr": "go away",
            "emotion": "angry",
            "sentiment": "negative",
            "split": "test",
            "speaker": "sam",
        },
    ]
    manifest = _jsonl(tmp_path / "stsp" / "manifest" / "emov.test.jsonl", rows)
    plan = plan_source(str(manifest), data_root=str(tmp_path / "stsp"))
    assert not plan.rejects
    first, second = plan.items
    assert first.meta["text"] == "i am so happy" and first.meta["sentiment"] == "positive"
    assert second.meta["sentiment"] == "negative" and second.meta["speaker"] == "sam"
    assert first.source_row == 1 and second.source_row == 2


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_tabular_manifests(tmp_path: Path, write_audio: WriteAudio, fmt: str) -> None:
    write_audio("d/a.wav")
    write_audio("d/b.wav")
    df = pd.DataFrame(
        {
            "id": ["a", "b"],
            "path": ["a.wav", "b.wav"],
            "text": ["hello", None],
            "words": [json.dumps([{"word": "hello", "start": 0.1, "end": 0.4}]), None],
        }
    )
    path = tmp_path / "d" / f"m.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    plan = plan_source(str(path))
    assert [i.id for i in plan.items] == ["a", "b"]
    assert plan.items[0].meta["words"] == [{"word": "hello", "start": 0.1, "end": 0.4}]
    assert plan.items[1].meta["text"] is None


def test_paths_escaping_the_data_root_are_rejected(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("root/ok.wav")
    outside = write_audio("secret/outside.wav")
    (tmp_path / "root" / "link.wav").symlink_to(outside)
    rows = [
        {"id": "ok", "path": "ok.wav"},
        {"id": "dotdot", "path": "../secret/outside.wav"},
        {"id": "abs", "path": str(outside)},
        {"id": "link", "path": "link.wav"},
        {"id": "url", "path": "s3://bucket/x.wav"},
    ]
    manifest = _jsonl(tmp_path / "root" / "m.jsonl", rows)
    plan = plan_source(str(manifest))
    assert [i.id for i in plan.items] == ["ok"]
    by_id = {r.id: r for r in plan.rejects}
    assert set(by_id) == {"dotdot", "abs", "link", "url"}
    assert all(r.reason == "outside_root" for r in plan.rejects)
    assert "symlink" in by_id["link"].error and "row 4" in by_id["link"].error


def test_folder_symlink_out_of_root_is_rejected(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("root/in.wav")
    outside = write_audio("elsewhere/out.wav")
    (tmp_path / "root" / "out.wav").symlink_to(outside)
    plan = plan_source(str(tmp_path / "root"))
    assert [i.id for i in plan.items] == ["in"]
    assert [(r.id, r.reason) for r in plan.rejects] == [("out", "outside_root")]


def test_bad_rows_name_row_and_column(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("m/a.wav")
    manifest = tmp_path / "m" / "m.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "path": "a.wav"})
        + "\n"
        + "{not json\n"
        + json.dumps({"id": "b", "path": ""})
        + "\n"
        + json.dumps({"id": "c", "path": "a.wav", "sentiment": "joyful"})
        + "\n"
        + json.dumps({"id": "d", "path": "a.wav", "words": [{"word": "x", "start": 2, "end": 1}]})
        + "\n"
        + json.dumps({"id": "e", "path": "missing.wav"})
        + "\n"
    )
    plan = plan_source(str(manifest))
    assert [i.id for i in plan.items] == ["a"]
    errors = {r.source_row: (r.reason, r.error) for r in plan.rejects}
    assert errors[2][0] == "bad_row" and "row 2" in errors[2][1] and "invalid JSON" in errors[2][1]
    assert errors[3][0] == "bad_row" and "'path' is empty" in errors[3][1]
    assert errors[4][0] == "bad_row" and "column 'sentiment'" in errors[4][1]
    assert errors[5][0] == "bad_row" and "column 'words'" in errors[5][1]
    assert errors[6][0] == "missing" and "row 6" in errors[6][1]


def test_duplicate_ids_are_a_clear_error(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("m/a.wav")
    write_audio("m/b.wav")
    manifest = _jsonl(
        tmp_path / "m" / "m.jsonl", [{"id": "x", "path": "a.wav"}, {"id": "x", "path": "b.wav"}]
    )
    with pytest.raises(ManifestError, match=r"id 'x': row 1 and row 2"):
        plan_source(str(manifest))


def test_folder_ids_clash_across_extensions(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("f/a.wav")
    write_audio("f/a.flac")
    with pytest.raises(ManifestError, match="ids must be unique"):
        plan_source(str(tmp_path / "f"))


def test_manifest_without_path_column(tmp_path: Path) -> None:
    manifest = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "audio_file": "a.wav"}])
    with pytest.raises(ManifestError, match="no path column"):
        plan_source(str(manifest))


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or folder"):
        plan_source(str(tmp_path / "nothing-here"))
