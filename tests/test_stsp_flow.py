"""The stsp flow end to end on the synthetic set with tiny checkpoints: all four directions, resume, n-shot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import StspParams
from flows.stsp import stsp_flow
from models.metrics import metric_rows


def _run(**kwargs: Any) -> Any:
    params = StspParams(**{"seeds": 2, "max_new_speech": 40, "max_new_text": 20, **kwargs})
    return stsp_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(params)


def _table(out: Path, name: str) -> pd.DataFrame:
    return (
        pd.read_parquet(out / name)
        .sort_values(list(pd.read_parquet(out / name).columns[:3]))
        .reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def stsp_run(
    tiny_checkpoints: Path, stsp_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any, dict[str, Any]]:
    out = tmp_path_factory.mktemp("stsp-run") / "run"
    common = {
        "data_root": str(stsp_data),
        "model": str(tiny_checkpoints / "spiritlm_model" / "spirit-lm-expressive-7b"),
        "checkpoints": str(tiny_checkpoints),
        "shard_size": 8,
    }
    summary = _run(out=str(out), **common)
    return out, summary, common


def test_all_four_directions_end_to_end(stsp_run: tuple[Path, Any, dict[str, Any]]) -> None:
    out, summary, _ = stsp_run
    gens = pd.read_parquet(out / "generations")
    # 6 items per test set; T→X on expresso_asr, S→X on expresso_read + emov; 2 seeds
    assert gens.groupby("direction").size().to_dict() == {
        "t2t": 12,
        "t2s": 12,
        "s2t": 24,
        "s2s": 24,
    }
    assert summary.generations == 72 and summary.scored == 72 and summary.shards_reused == 0
    assert gens.gen_id.is_unique and set(gens.seed) == {0, 1}
    speech_out = gens[gens.output == "SPEECH"]
    assert (speech_out.text == "").all()
    with_audio = speech_out[speech_out.hubert_tokens > 0]
    assert len(with_audio) and all(Path(u).is_file() for u in with_audio.audio_uri)
    text_out = gens[gens.output == "TEXT"]
    assert (text_out.speech == "").all() and (text_out.new_tokens <= 20).all()
    assert gens[gens.direction == "s2t"].prompt.str.startswith("[Speech][St").all()
    assert gens[gens.direction == "t2s"].prompt.str.endswith("[Speech]").all()
    scores = pd.read_parquet(out / "scores")
    assert set(scores.scorer) == {"vader", "asr+vader"} and not scores.paper_classifier.any()
    metrics = pd.read_parquet(out / "metrics")
    recomputed = pd.DataFrame(metric_rows(scores.to_dict("records")))
    assert sorted(metrics.accuracy.round(9)) == sorted(recomputed.accuracy.round(9))
    overall = metrics[(metrics.dataset == "all")].set_index("direction")
    for direction, group in scores.groupby("direction"):
        by_seed = [
            (g.label == g.pred).groupby(g.dataset).mean().mean() for _, g in group.groupby("seed")
        ]
        assert overall.loc[direction, "mean"] == pytest.approx(sum(by_seed) / len(by_seed))
    report = (out / "reports" / "stsp.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "not the paper" in report
    assert "Spirit LM Expressive (paper)" in (out / "reports" / "stsp.md").read_text()


def test_rerun_resumes_and_recomputes_only_missing_shards(
    stsp_run: tuple[Path, Any, dict[str, Any]],
) -> None:
    out, first, common = stsp_run
    before = _table(out, "generations")
    again = _run(out=str(out), **common)
    assert again.shards_computed == 0 and again.generations == first.generations
    shard = next((out / "generations").glob("*/part-*.parquet"))
    shard.unlink()
    third = _run(out=str(out), **common)
    assert third.shards_computed == 1
    pd.testing.assert_frame_equal(_table(out, "generations"), before)


def test_batch_size_does_not_change_outputs(
    stsp_run: tuple[Path, Any, dict[str, Any]], tmp_path: Path
) -> None:
    out, _, common = stsp_run
    _run(out=str(tmp_path / "one"), directions="t2t,s2s", max_batch=1, seeds=1, **common)
    one = _table(tmp_path / "one", "generations").set_index("gen_id")
    many = _table(out, "generations").set_index("gen_id").loc[one.index]
    assert (one.speech == many.speech).all() and (one.text == many.text).all()


def test_few_shot_prompts_in_the_flow(
    stsp_run: tuple[Path, Any, dict[str, Any]], tmp_path: Path
) -> None:
    _, _, common = stsp_run
    summary = _run(out=str(tmp_path / "fs"), directions="s2t,t2s", shots=3, seeds=1, **common)
    gens = pd.read_parquet(tmp_path / "fs" / "generations")
    assert summary.generations == 12 + 6
    for prompt in gens[gens.direction == "t2s"].prompt:
        examples = prompt.split("\n")
        assert (
            len(examples) == 4
            and examples[-1].startswith("[Text]")
            and examples[-1].endswith("[Speech]")
        )
        assert all(e.startswith("[Text]") and "[Speech][" in e for e in examples[:3])
    for prompt in gens[gens.direction == "s2t"].prompt:
        assert prompt.count("\n") == 3 and prompt.count("[Text]") == 4
