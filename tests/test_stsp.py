"""STSP: manifests and rejects, prompts, metrics against hand-computed values, scorers, post-hoc scoring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main
from models.metrics import (
    accuracy,
    bootstrap_ci,
    confusion,
    metric_rows,
    predictions,
    reference_labels,
    score_files,
)
from models.sentiment import (
    AsrTextScorer,
    HfSpeechClassifier,
    HfTextClassifier,
    VaderScorer,
    parse_scorer,
)
from models.stsp import (
    Shot,
    choose_shots,
    example_string,
    half_samples,
    parse_directions,
    split_words,
    stsp_prompt,
)
from models.tts import EspeakSynth, Prosody
from schemas.errors import ManifestError
from storage.sources import read_rows
from storage.stsp import DATASETS, load_split, read_manifest


def test_synthetic_set_has_the_released_layout(stsp_data: Path) -> None:
    items, rejects = load_split(str(stsp_data), DATASETS, "test", True, True)
    assert not rejects
    assert sorted(items) == sorted(DATASETS)
    for found in items.values():
        assert [i.sentiment for i in found].count("positive") == len(found) // 3  # balanced
        assert all(i.asr and i.wav_uri and os.path.isfile(i.wav_uri) for i in found)
    emov = {i.emotion for i in items["emov"]}
    assert emov == {"amused", "angry", "neutral"}
    train, _ = load_split(str(stsp_data), ["expresso_asr"], "train", True, False)
    assert len(train["expresso_asr"]) == 6


def test_bad_rows_are_rejected_naming_file_and_row(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "ok.wav").write_bytes(b"RIFF")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF")
    os.symlink(outside, data / "a" / "link.wav")
    rows = [
        {"id": 1, "wav_path": "a/ok.wav", "asr": "fine", "emotion": "happy"},
        "{not json",
        {"wav_path": "a/ok.wav", "asr": "x", "sentiment": "positive"},
        {"id": 3, "wav_path": "a/ok.wav", "asr": "x", "emotion": "sleepy"},
        {"id": 4, "wav_path": "a/ok.wav", "asr": "x", "sentiment": "great"},
        {"id": 5, "wav_path": "../secret.wav", "asr": "x", "sentiment": "neutral"},
        {"id": 6, "wav_path": "a/link.wav", "asr": "x", "sentiment": "neutral"},
        {"id": 7, "wav_path": "a/gone.wav", "asr": "x", "sentiment": "neutral"},
        {"id": 8, "wav_path": "a/ok.wav", "sentiment": "neutral"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    items, rejects = read_manifest(str(manifest), "emov", str(data), True, True)
    assert [i.id for i in items] == ["1"] and items[0].sentiment == "positive"
    got = {r.source_row: (r.reason, r.error) for r in rejects}
    assert {row: reason for row, (reason, _) in got.items()} == {
        2: "bad_row",
        3: "bad_row",
        4: "bad_row",
        5: "bad_row",
        6: "outside_root",
        7: "outside_root",
        8: "missing",
        9: "bad_row",
    }
    assert all(f"{manifest} row {row}" in err for row, (_, err) in got.items())
    assert "sleepy" in got[4][1] and "'asr'" in got[9][1] and "symlink" in got[7][1]
    # text-only directions need no audio: row 9 lacks asr, the audio rows are fine
    text_items, _ = read_manifest(str(manifest), "emov", str(data), True, False)
    assert [i.id for i in text_items] == ["1", "5", "6", "7"]
    manifest.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(ManifestError, match="rows 1 and 2"):
        read_manifest(str(manifest), "emov", str(data), True, True)


def test_missing_manifest_names_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="emov.test.jsonl"):
        load_split(str(tmp_path), ["emov"], "test", False, True)


def test_zero_shot_prompts_are_the_reference_ones() -> None:
    assert stsp_prompt("t2t", "I love it") == "[Text]I love it"
    assert stsp_prompt("t2s", "I love it") == "[Text]I love it[Speech]"
    assert stsp_prompt("s2t", "[Hu1][Hu2]") == "[Speech][Hu1][Hu2][Text]"
    assert stsp_prompt("s2s", "[Hu1][Hu2]") == "[Speech][Hu1][Hu2]"
    assert parse_directions("all") == ("t2t", "t2s", "s2t", "s2s")
    assert parse_directions("s2s, t2t,s2s") == ("s2s", "t2t")
    with pytest.raises(ValueError, match="x2y"):
        parse_directions("t2t,x2y")


def test_few_shot_prompts() -> None:
    keys = [f"k{i}" for i in range(9)]
    sentiments = ["positive", "negative", "neutral"] * 3
    picks = choose_shots(keys, sentiments, 4, seed=0)
    assert len(picks) == 6  # ceil(4/3) = 2 per sentiment
    assert [sentiments[p] for p in picks] == ["negative"] * 2 + ["neutral"] * 2 + ["positive"] * 2
    assert picks == choose_shots(keys, sentiments, 4, seed=0)
    assert any(
        choose_shots(keys, sentiments, 3, seed=s) != choose_shots(keys, sentiments, 3, seed=0)
        for s in range(1, 6)
    )
    with pytest.raises(ValueError, match="need 4 negative"):
        choose_shots(keys, sentiments, 12, seed=0)
    assert split_words("one two three four five") == ("one two", "three four five")
    a, b = half_samples(np.arange(7))
    assert len(a) == 3 and len(b) == 4
    shots = [Shot("x", "positive", "[Hu1]", "so good"), Shot("y", "negative", "[Hu2]", "so bad")]
    assert example_string("s2t", shots[0]) == "[Speech][Hu1][Text]so good"
    assert stsp_prompt("s2t", "[Hu9]", shots) == (
        "[Speech][Hu1][Text]so good\n[Speech][Hu2][Text]so bad\n[Speech][Hu9][Text]"
    )


def test_accuracy_confusion_and_intervals_by_hand() -> None:
    labels = ["positive", "negative", "neutral", "positive", "neutral"]
    preds = ["positive", "neutral", "neutral", "negative", "neutral"]
    acc = accuracy(labels, preds)
    assert (acc.n, acc.correct, acc.accuracy) == (5, 3, 0.6)
    assert acc.confusion == [[1, 1, 0], [0, 0, 1], [0, 0, 2]]
    assert confusion(["neutral"], ["positive"]) == [[0, 0, 0], [0, 0, 0], [1, 0, 0]]
    low, high = bootstrap_ci([True] * 60 + [False] * 40)
    assert low < 0.6 < high and 0.08 < high - low < 0.22  # ≈ ±1.96·sqrt(.24/100)
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    assert bootstrap_ci([True, False] * 20, seed=3) == bootstrap_ci([True, False] * 20, seed=3)


def test_metric_rows_mean_and_std_over_seeds_and_datasets() -> None:
    def rows(direction: str, dataset: str, seed: int, hits: int, n: int) -> list[dict[str, object]]:
        return [
            {
                "direction": direction,
                "dataset": dataset,
                "seed": seed,
                "label": "positive",
                "pred": "positive" if k < hits else "negative",
                "scorer": "vader",
            }
            for k in range(n)
        ]

    scores = (
        rows("s2s", "emov", 0, 3, 4)  # 0.75
        + rows("s2s", "emov", 1, 1, 4)  # 0.25
        + rows("s2s", "expresso_read", 0, 2, 4)  # 0.5
        + rows("s2s", "expresso_read", 1, 2, 4)  # 0.5
    )
    out = {(m["dataset"], m["seed"]): m for m in metric_rows(scores)}
    assert out[("emov", 0)]["accuracy"] == 0.75 and out[("emov", 1)]["accuracy"] == 0.25
    assert out[("emov", None)]["mean"] == 0.5 and out[("emov", None)]["std"] == 0.25
    assert out[("expresso_read", None)]["std"] == 0.0
    # per seed the datasets average (0.625, 0.375); the direction's figure is their mean
    assert out[("all", None)]["mean"] == 0.5 and out[("all", None)]["std"] == 0.125
    assert out[("all", None)]["n"] == 16 and out[("all", None)]["correct"] == 8
    assert out[("all", None)]["confusion"][:3] == [8, 8, 0]


def test_score_files_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": 1, "emotion": "happy", "sentiment": "positive"},
                {"id": 2, "emotion": "sad"},
                {"id": 3, "emotion": "default", "sentiment": "neutral"},
                {"id": 4, "emotion": "angry", "sentiment": "negative"},
                {"id": 5, "emotion": "amused"},
            ]
        )
    )
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "".join(
            json.dumps({"id": str(i), "pred": p}) + "\n"
            for i, p in [
                (1, "positive"),
                (2, "negative"),
                (3, "positive"),
                (4, "neutral"),
                (5, "positive"),
            ]
        )
    )
    refs = reference_labels(read_rows(str(ref), None), "sentiment", "ref")
    assert refs == {
        "1": "positive",
        "2": "negative",
        "3": "neutral",
        "4": "negative",
        "5": "positive",
    }
    acc = score_files(refs, predictions(read_rows(str(pred), None), "pred"), "ref", "pred")
    assert (acc.correct, acc.n) == (3, 5)
    assert main(["stsp-score", "--ref", str(ref), "--pred", str(pred)]) == 0
    assert "Accuracy: 60.00% (3/5)" in capsys.readouterr().out
    emotions = tmp_path / "emotions.jsonl"
    emotions.write_text(
        "".join(
            json.dumps({"id": i, "pred": p}) + "\n"
            for i, p in [(1, "happy"), (2, "sad"), (3, "sad"), (4, "angry"), (5, "happy")]
        )
    )
    assert (
        main(
            [
                "stsp-score",
                "--ref",
                str(ref),
                "--pred",
                str(emotions),
                "--label",
                "emotion",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert (result["correct"], result["n"], result["confusion"]) == (3, 5, [])
    short = tmp_path / "short.jsonl"
    short.write_text(
        json.dumps({"id": 1, "pred": "positive"})
        + "\n"
        + json.dumps({"id": 9, "pred": "neutral"})
        + "\n"
    )
    assert main(["stsp-score", "--ref", str(ref), "--pred", str(short)]) == 1
    err = capsys.readouterr().err
    assert (
        "4 reference ids have no prediction (e.g. 2, 3, 4, 5)" in err and "1 predicted ids" in err
    )
    dup = tmp_path / "dup.jsonl"
    dup.write_text(
        json.dumps({"id": 1, "pred": "positive"})
        + "\n"
        + json.dumps({"id": "1", "pred": "neutral"})
        + "\n"
    )
    assert main(["stsp-score", "--ref", str(ref), "--pred", str(dup)]) == 1
    assert "appears twice" in capsys.readouterr().err


def test_vader_scores_sentiment_words() -> None:
    labels = [
        label
        for label, _ in VaderScorer().score_texts(
            ["I love this, wonderful!", "This is awful and sad.", "The door is brown."]
        )
    ]
    assert labels == ["positive", "negative", "neutral"]


def test_asr_scorer_hears_synthetic_speech() -> None:
    synth = EspeakSynth.shared()
    import torch
    import torchaudio.functional as taf

    wavs = [
        taf.resample(torch.from_numpy(synth.speak(t, Prosody())), synth.sample_rate, 16_000).numpy()
        for t in ("I am so happy, this is wonderful news!", "This is terrible, I hate it.")
    ]
    scorer = AsrTextScorer(VaderScorer())
    assert scorer.name == "asr+vader" and not scorer.paper_classifier
    results = scorer.score_audio([*wavs, np.zeros(100, np.float32)])
    assert [label for label, _ in results] == ["positive", "negative", "neutral"]
    assert "happy" in results[0][1].lower()


def test_hf_classifiers_load_the_paper_formats(tiny_checkpoints: Path, tmp_path: Path) -> None:
    from models.errors import CheckpointError
    from models.tiny import CLASSIFIER_DIRS

    text = HfTextClassifier(tiny_checkpoints / CLASSIFIER_DIRS["text"])
    assert text.paper_classifier and text.labels == {0: "negative", 1: "neutral", 2: "positive"}
    assert all(
        label in ("negative", "neutral", "positive") for label, _ in text.score_texts(["hi", "ok"])
    )
    speech = HfSpeechClassifier(tiny_checkpoints / CLASSIFIER_DIRS["speech"])
    assert speech.labels == {
        0: "negative",
        1: "neutral",
        2: "positive",
        3: "negative",
    }  # emotions mapped
    [(label, detail)] = speech.score_audio(
        [np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)]
    )
    assert detail.startswith("emotion=") and label in ("negative", "neutral", "positive")
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(tiny_checkpoints / CLASSIFIER_DIRS["speech"], bad)
    config = json.loads((bad / "config.json").read_text())
    config["id2label"] = {"0": "sleepy", "1": "happy", "2": "sad", "3": "angry"}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="sleepy"):
        HfSpeechClassifier(bad)
    with pytest.raises(CheckpointError, match="cannot load"):
        HfTextClassifier(tmp_path)
    assert parse_scorer("hf:/x", "text") == ("hf", Path("/x"))
    with pytest.raises(ValueError, match="vader or hf:DIR"):
        parse_scorer("asr+text", "text")
