"""The command line: help on every command, exit codes, and the printed summary."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import WriteAudio

from flows.cli import EXIT_NOTHING_READABLE, EXIT_OK, EXIT_USAGE, build_parser, main

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["ingest", "--help"],
        ["tokenize", "--help"],
        ["decode", "--help"],
        ["build-corpus", "--help"],
        ["checkpoints", "tiny", "--help"],
        ["stsp", "--help"],
        ["stsp-score", "--help"],
        ["stsp-synth", "--help"],
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: spiritflow" in out
    if argv[0] == "ingest":
        for flag in (
            "--out",
            "--data-root",
            "--min-duration-s",
            "--shard-size",
            "--storage-option",
            "--dask-address",
            "--workers",
        ):
            assert flag in out


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, cmd in sub.choices.items():  # type: ignore[union-attr]
        assert cmd.description, name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--storage-option", "secret=abc"], "credential"),
        (["--storage-option", "nonsense"], "KEY=VALUE"),
        (["--shard-size", "0"], "--shard_size"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ingest", str(tmp_path), "--out", str(tmp_path / "o"), *extra])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights", "1,1"], "three"),
        (["--weights", "0,0,0"], "not all zero"),
        (["--text-span", "30-10"], "MIN <= MAX"),
        (["--speech-span", "five"], "MIN-MAX"),
        (["--aligner", "whisper"], "whisper"),
    ],
)
def test_build_corpus_usage_errors_exit_2(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "build-corpus",
        "--units",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "1",
    ]
    code = main([*argv, *extra])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_build_corpus_without_a_units_table_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["build-corpus", "--units", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--tokenizer", str(tmp_path), "--workers", "1"]) == EXIT_NOTHING_READABLE
    assert "no units table" in capsys.readouterr().err


def test_missing_source_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert code == EXIT_NOTHING_READABLE
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_prints_summary_and_exit_codes(
    tmp_path: Path, write_audio: WriteAudio, capsys: pytest.CaptureFixture[str]
) -> None:
    write_audio("ok/a.wav")
    (tmp_path / "ok" / "b.wav").write_bytes(b"")
    code = main(["ingest", str(tmp_path / "ok"), "--out", str(tmp_path / "o"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert (
        "good recordings : 1" in out
        and "empty" in out
        and str(tmp_path / "o" / "recordings") in out
    )
    code = main(["ingest", str(tmp_path / "ok"), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert "all reused (nothing recomputed)" in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"")
    assert (
        main(["ingest", str(tmp_path / "bad"), "--out", str(tmp_path / "o2"), "--workers", "1"])
        == 1
    )


def test_prefect_yaml_deployments_point_at_real_flows() -> None:
    import importlib

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"]
    for dep in config["deployments"]:
        module, _, attr = dep["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
        flow.validate_parameters(dep["parameters"])  # raises if the parameters do not fit the flow
        assert dep["work_pool"]["name"] == "spiritflow-process"
    scheduled = [d for d in config["deployments"] if d.get("schedules")]
    assert scheduled and scheduled[0]["entrypoint"].endswith(":tokenize")
    from prefect.client.schemas.schedules import CronSchedule

    CronSchedule(cron=scheduled[0]["schedules"][0]["cron"])  # a valid cron expression


def test_summary_markdown_has_the_table_note_and_links() -> None:
    from flows.progress import summary_markdown

    text = summary_markdown(
        "corpus (base)",
        [{"kind": "text", "samples": 3}, {"kind": "all", "samples": 5}],
        {"corpus": "/r/corpus"},
        "rejected: 1",
    )
    assert text.splitlines() == [
        "# corpus (base)",
        "",
        "| kind | samples |",
        "|---|---|",
        "| text | 3 |",
        "| all | 5 |",
        "",
        "rejected: 1",
        "",
        "- **corpus**: `/r/corpus`",
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--directions", "t2t,t2x"], "t2x"),
        (["--datasets", "librispeech"], "librispeech"),
        (["--text-scorer", "roberta"], "vader or hf:DIR"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_stsp_usage_errors_exit_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "stsp",
        "--data-root",
        str(tmp_path),
        "--model",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv + extra) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_stsp_without_a_model_or_data_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_checkpoints: Path
) -> None:
    out = str(tmp_path / "o")
    assert (
        main(
            [
                "stsp",
                "--data-root",
                str(tmp_path),
                "--model",
                str(tmp_path),
                "--out",
                out,
                "--workers",
                "1",
            ]
        )
        == 1
    )
    assert "config.json" in capsys.readouterr().err
    model = str(tiny_checkpoints / "spiritlm_model" / "spirit-lm-base-7b")
    assert (
        main(
            ["stsp", "--data-root", str(tmp_path), "--model", model, "--out", out, "--workers", "1"]
        )
        == 1
    )
    assert "emov.test.jsonl: STSP manifest not found" in capsys.readouterr().err


def test_corrupt_checkpoint_or_wrong_variant_fails_before_any_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(ROOT / "tests" / "fixtures" / "reference-tiny" / "checkpoints", ckpt)
    hubert = ckpt / "speech_tokenizer" / "hubert_25hz" / "mhubert_base_25hz.pt"
    good = hubert.read_bytes()
    hubert.write_bytes(good[: len(good) // 2])  # truncated download
    argv = [
        "tokenize",
        str(ROOT / "samples" / "demo.jsonl"),
        "--data-root",
        str(ROOT / "tests" / "fixtures"),
        "--checkpoints",
        str(ckpt),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "1",
    ]
    assert main(argv) == EXIT_NOTHING_READABLE
    err = capsys.readouterr().err
    assert f"{hubert}: cannot load checkpoint" in err
    assert not (tmp_path / "out" / "units").exists()  # stopped at planning: nothing extracted
    hubert.write_bytes(good)
    shutil.rmtree(ckpt / "speech_tokenizer" / "vqvae_f0_quantizer")  # a base-only folder
    assert main([*argv, "--variant", "expressive"]) == EXIT_NOTHING_READABLE
    assert "vqvae_f0_quantizer/config.yaml: checkpoint file not found" in capsys.readouterr().err
