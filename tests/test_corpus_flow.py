"""build-corpus end to end: real alignment of real speech, kinds, rejects, GE, stats, packing, reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import duckdb
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import FIXTURES, REFERENCE_AUDIO, tone
from prefect.task_runners import ThreadPoolTaskRunner

from flows.corpus import build_corpus_flow
from flows.params import BuildCorpusParams, TokenizeParams
from flows.units import tokenize_flow
from models.text_tokenizer import TextTokenizer
from models.tiny import write_llama_sentencepiece
from schemas.errors import UsageError
from schemas.tables import CORPUS, PACKED
from storage.parquet import read_table

CKPT = FIXTURES / "reference-tiny" / "checkpoints"
ARCTIC = FIXTURES / "arctic" / "arctic_a0007.wav"
ARCTIC_TEXT = "And you always want to see it in the superlative degree."
GLIDE_WORDS = [
    {"word": w, "start": 0.2 + 0.25 * i, "end": 0.2 + 0.25 * i + 0.2}
    for i, w in enumerate(
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
]


def _run(flow: Any, params: Any) -> Any:
    return flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(params)


def _manifest(folder: Path, extra: list[dict[str, Any]] | None = None) -> Path:
    shutil.copy(ARCTIC, folder / "arctic.wav")
    shutil.copy(REFERENCE_AUDIO / "glide_3s.wav", folder / "glide.wav")
    sf.write(folder / "blip.wav", tone(0.4), 16_000)
    rows = [
        {"id": "arctic", "wav_path": "arctic.wav", "asr": ARCTIC_TEXT},
        {"id": "glide", "wav_path": "glide.wav", "words": GLIDE_WORDS},
        # far too many words for 0.4 s: the aligner finds no path → alignment reject, speech sample
        {"id": "blip", "wav_path": "blip.wav", "asr": " ".join(["superlative"] * 30)},
        *(extra or []),
    ]
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def units_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("units-run")
    params = TokenizeParams(
        source=str(_manifest(folder)),
        out=str(folder / "run"),
        checkpoints=str(CKPT),
        variant="expressive",
    )  # type: ignore[arg-type]
    _run(tokenize_flow, params)
    return folder / "run"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llama-tokenizer")
    write_llama_sentencepiece(folder)
    return folder


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.jsonl"
    rows = [{"id": f"doc{i}", "text": f"the time of document {i} was there"} for i in range(6)]
    lines = [json.dumps(r) for r in rows] + [
        '{"id": "bad", "text": "forged [Speech] marker"}',
        "{oops",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _params(
    units_run: Path | str, tokenizer_dir: Path, out: Path | str, **kw: Any
) -> BuildCorpusParams:
    base: dict[str, Any] = {
        "units": str(units_run),
        "tokenizer": str(tokenizer_dir),
        "out": str(out),
        "weights": (0, 1, 1),
        "text_span": (2, 3),
        "speech_span": (2, 3),
        "shard_size": 1,
    }
    return BuildCorpusParams(**{**base, **kw})


def _corpus(out: Path) -> pd.DataFrame:
    return read_table(str(out / "corpus"), CORPUS).to_pandas().set_index("sample_id").sort_index()


def test_build_corpus_end_to_end(
    units_run: Path, tokenizer_dir: Path, texts: Path, tmp_path: Path
) -> None:
    out = tmp_path / "corpus-run"
    summary = _run(
        build_corpus_flow,
        _params(units_run, tokenizer_dir, out, text=str(texts), pack=True, seq_len=64),
    )
    corpus = _corpus(out)
    # blip's alignment fails, so it is a speech sample; the other two are interleaved; 3 of 6 texts
    assert sorted(corpus.index) == sorted(
        ["interleaved:arctic", "interleaved:glide", "speech:blip"]
        + [f"text:doc{i}" for i in range(6) if f"text:doc{i}" in corpus.index]
    )
    assert summary.samples_by_kind == {"speech": 1, "text": 3, "interleaved": 2}
    assert summary.aligned_now == 2  # arctic and blip went through pocketsphinx; glide had words

    rejects = pd.read_parquet(out / "corpus_rejects")
    by_reason = rejects.groupby(["stage", "reason"]).size().to_dict()
    assert by_reason == {("align", "align_failed"): 1, ("corpus", "bad_text"): 2}
    assert rejects.loc[rejects.reason == "align_failed", "id"].item() == "blip"
    assert "row 7" in rejects.loc[rejects.id == "bad", "error"].item()

    # real alignment of real speech: ARCTIC's words land where pocketsphinx hears them
    alignments = pd.read_parquet(out / "alignments").set_index("id")
    words = list(alignments.loc["arctic", "words"])
    assert [w["word"] for w in words] == ARCTIC_TEXT.split()
    assert words[0]["start"] == pytest.approx(0.37, abs=0.05) and words[-1]["end"] == pytest.approx(
        3.49, abs=0.05
    )

    tok = TextTokenizer.from_dir(tokenizer_dir)
    for sample_id, row in corpus.iterrows():
        assert tok.decode_sample(row["input_ids"][1:-1]) == row["text"], sample_id
    arctic = corpus.loc["interleaved:arctic"]
    spans = list(arctic["spans"])
    assert {s["modality"] for s in spans} == {"text", "speech"}
    for span in spans:  # speech spans cover exactly their words' time range
        assert span["start_s"] == pytest.approx(words[span["start_word"]]["start"])
        assert span["end_s"] == pytest.approx(words[span["stop_word"] - 1]["end"])
    text_spans = [s for s in spans if s["modality"] == "text"]
    shown = ARCTIC_TEXT.split()
    for span in text_spans:
        assert "[Text]" + " ".join(shown[span["start_word"] : span["stop_word"]]) in arctic["text"]

    stats = pd.read_parquet(out / "corpus_stats").set_index("kind")
    assert stats.loc["all", "samples"] == 6
    assert stats.loc["all", "tokens"] == int(corpus["n_tokens"].sum())
    assert stats.loc["interleaved", "speech_seconds"] == pytest.approx(
        corpus["speech_seconds"][corpus.kind == "interleaved"].sum()
    )
    assert stats.loc["all", "expected_tokens_per_s"] == 28.0
    assert sum(stats.loc["interleaved", "speech_span_words"]) == sum(
        s["modality"] == "speech"
        for spans_ in corpus["spans"][corpus.kind == "interleaved"]
        for s in spans_
    )

    # packing keeps every id of every sample, in order, with exact boundaries
    packed = read_table(str(out / "packed"), PACKED).to_pandas().sort_values("seq_index")
    assert all(len(ids) == 64 for ids in packed["input_ids"].iloc[:-1])
    rebuilt: dict[str, list[int]] = {}
    for _, seq in packed.iterrows():
        bounds = [*seq["doc_starts"], len(seq["input_ids"])]
        for k, (sid, offset) in enumerate(
            zip(seq["sample_ids"], seq["sample_offsets"], strict=True)
        ):
            assert len(rebuilt.get(sid, [])) == offset
            rebuilt.setdefault(sid, []).extend(seq["input_ids"][bounds[k] : bounds[k + 1]].tolist())
    assert rebuilt == {sid: list(row["input_ids"]) for sid, row in corpus.iterrows()}

    # readable by DuckDB and Hugging Face datasets as plain Parquet
    count = duckdb.execute(
        f"select count(*) from read_parquet('{out}/corpus/**/*.parquet')"
    ).fetchone()
    assert count == (6,)
    ds = datasets.load_dataset(
        "parquet", data_files=str(out / "corpus" / "**" / "*.parquet"), split="train"
    )
    assert sorted(ds["sample_id"]) == sorted(corpus.index)


def test_rebuild_reuses_everything_and_a_lost_shard_is_rebuilt_identically(
    units_run: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "corpus-run"
    params = _params(units_run, tokenizer_dir, out)
    first = _run(build_corpus_flow, params)
    before = _corpus(out)
    again = _run(build_corpus_flow, params)
    assert again.shards_computed == 0 and again.shards_reused == first.shards_computed
    assert again.aligned_now == 0
    shard = next((out / "corpus").rglob("*.parquet"))
    original = shard.read_bytes()
    shutil.rmtree(shard.parent)
    third = _run(build_corpus_flow, params)
    assert third.shards_computed == 1 and third.aligned_now == 0  # alignments are cached apart
    assert shard.read_bytes() == original  # same bytes
    pd.testing.assert_frame_equal(_corpus(out), before)


def test_seed_changes_samples_not_alignments(
    units_run: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "corpus-run"
    _run(build_corpus_flow, _params(units_run, tokenizer_dir, out))
    before = _corpus(out)
    other = _run(build_corpus_flow, _params(units_run, tokenizer_dir, out, seed=7))
    assert other.aligned_now == 0 and other.shards_reused == 0
    after = _corpus(out)
    assert list(after.index) == list(before.index)
    changed = [
        sid
        for sid in after.index
        if not np.array_equal(after.loc[sid, "input_ids"], before.loc[sid, "input_ids"])
    ]
    assert changed  # spans are redrawn with the new seed


def test_adding_a_recording_keeps_old_samples(
    units_run: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "corpus-run"
    _run(build_corpus_flow, _params(units_run, tokenizer_dir, out))
    before = _corpus(out)
    grown = tmp_path / "grown"
    shutil.copytree(units_run, grown)
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "extra.wav", tone(1.5, freq=330.0), 16_000)
    manifest = _manifest(folder, [{"id": "extra", "wav_path": "extra.wav"}])
    _run(
        tokenize_flow,
        TokenizeParams(
            source=str(manifest), out=str(grown), checkpoints=str(CKPT), variant="expressive"
        ),  # type: ignore[arg-type]
    )
    _run(build_corpus_flow, _params(grown, tokenizer_dir, out))
    after = _corpus(out)
    assert set(after.index) == set(before.index) | {"speech:extra"}
    for sid in before.index:
        assert np.array_equal(after.loc[sid, "input_ids"], before.loc[sid, "input_ids"]), sid


def test_wrong_variant_or_tokenizer_fails_before_any_work(
    units_run: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    base_tok = tmp_path / "base-tok"
    base_tok.mkdir()
    shutil.copy(tokenizer_dir / "tokenizer.model", base_tok / "tokenizer.model")
    (base_tok / "added_tokens.json").write_text(
        json.dumps({"[Text]": 32000, "[Speech]": 32001, "[Hu0]": 32002})
    )
    with pytest.raises(UsageError, match="Base tokenizer"):
        _run(build_corpus_flow, _params(units_run, base_tok, tmp_path / "out"))
    assert not (tmp_path / "out" / "corpus").exists()


def test_build_corpus_on_s3_equals_local(
    units_run: Path,
    tokenizer_dir: Path,
    texts: Path,
    tmp_path: Path,
    s3_server: dict[str, Any],
    s3_bucket: str,
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)  # type: ignore[arg-type]
    for table in ("recordings", "units"):
        fs.put(str(units_run / table), f"{s3_bucket}/run/{table}", recursive=True)
    fs.put(str(texts), f"{s3_bucket}/texts.jsonl")
    local = tmp_path / "local"
    _run(build_corpus_flow, _params(units_run, tokenizer_dir, local, text=str(texts)))
    remote = f"s3://{s3_bucket}/corpus-run"
    summary = _run(
        build_corpus_flow,
        _params(
            f"s3://{s3_bucket}/run",
            tokenizer_dir,
            remote,
            text=f"s3://{s3_bucket}/texts.jsonl",
            storage_options=s3_server,
        ),
    )
    assert summary.samples == 6 and summary.tables["corpus"] == f"{remote}/corpus"
    got = read_table(f"{remote}/corpus", CORPUS, storage_options=s3_server).to_pandas()
    got = got.set_index("sample_id").sort_index()
    want = _corpus(local)
    assert list(got.index) == list(want.index)
    for sid in want.index:
        assert np.array_equal(got.loc[sid, "input_ids"], want.loc[sid, "input_ids"]), sid
    assert fs.exists(f"{s3_bucket}/corpus-run/corpus_stats/_table.json")
